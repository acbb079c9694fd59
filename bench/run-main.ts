// Runs a bench's main() when its file is the process's entry point (not when a test imports it),
// turning the result into the exit code and a failure into one line on stderr. Built-ins only, so the
// benches still run where a bare Node binary is unpacked.
export function runIfEntryPoint(moduleUrl: string, name: string, main: () => Promise<number>): void {
  const entry = process.argv[1];
  if (entry === undefined || moduleUrl !== new URL(`file://${entry}`).href) return;
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${name} failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
