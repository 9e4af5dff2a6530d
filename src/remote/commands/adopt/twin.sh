# tj-deploy `setup --adopt`: whether a copy made with `cp -al` still holds exactly the same
# files. tjls lists a tree (a directory per path, a symlink by its target, anything else by
# device:inode); `twin A B` succeeds when every entry under A has its hard-linked twin at the
# same path under B (B may hold more). A listing that fails is no twin.
T=$(mktemp -d "${TMPDIR:-/tmp}/tj-twin.XXXXXX")
trap 'rm -rf "$T"' EXIT
tjls() {
  (cd "$1" && find . \( -type l -printf 'l:%l %p\n' \) -o \( -type d -printf 'd %p\n' \) -o -printf '%D:%i %p\n') > "$2.raw" || return 1
  LC_ALL=C sort "$2.raw" > "$2" || return 1
}
twin() {
  if [ -L "$1" ]; then
    [ -L "$2" ] && [ "$(readlink "$1")" = "$(readlink "$2")" ]
  elif [ -d "$1" ]; then
    [ -d "$2" ] && [ ! -L "$2" ] || return 1
    tjls "$1" "$T/a" && tjls "$2" "$T/b" || return 1
    [ -z "$(LC_ALL=C comm -23 "$T/a" "$T/b" | head -c 1)" ]
  else
    [ ! -L "$2" ] && [ "$1" -ef "$2" ]
  fi
}
# Moves $1 into $K (made on demand) under its name, numbered (.1, .2, …) when $K holds that
# name already (a rerun): never overwrites.
keep() {
  mkdir -p "$K" || return 1
  t="$K/${1##*/}"; i=1
  while [ -e "$t" ] || [ -L "$t" ]; do t="$K/${1##*/}.$i"; i=$((i + 1)); done
  mv -n "$1" "$t"
}
# Removes $1 when twin of $2, else keeps it (see keep) and prints `kept <name>`.
settle() {
  if twin "$1" "$2"; then rm -rf "$1"; else keep "$1"; printf 'kept %s\n' "${1##*/}"; fi
}
