// charlm's entry point: pick the subcommand, parse its flags, run it, and turn a CharlmError into one line.

import { pathToFileURL } from "node:url";
import { CharlmError, UsageError } from "../util/errors.js";
import { helpText, parseFlags } from "./flags.js";
import { commands } from "./commands/index.js";

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    "charlm: character-level language models: train on any corpus, generate text.",
    "",
    "Usage: charlm <command> [options]    (charlm <command> --help for its options)",
    "",
    "Commands:",
    ...commands.map((c) => "  " + c.name.padEnd(width) + c.summary),
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") {
    process.stdout.write("charlm 0.1.0\n");
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`charlm: unknown command '${name}'; run 'charlm --help' for the list\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(helpText(command.name, command.summary, command.schema, command.examples));
    return 0;
  }
  try {
    const flags = parseFlags(rest, command.schema, command.name);
    if (!command.positionals && flags._.length) {
      throw new UsageError(
        `unexpected argument '${flags._[0]}' for 'charlm ${command.name}'; flags start with -- (run 'charlm ${command.name} --help')`,
      );
    }
    return (await command.run(flags)) ?? 0;
  } catch (err) {
    if (err instanceof CharlmError) {
      process.stderr.write(`charlm ${command.name}: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exitCode = await main(process.argv.slice(2));
}
