export default function Home() {
  return (
    <main>
      <h1>Trading Journal</h1>
      <p>Deployed by tj-deploy.</p>
    </main>
  );
}
