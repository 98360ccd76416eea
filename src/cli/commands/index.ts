// The subcommand registry: one line per command, in the order `charlm --help` lists them.

import type { Command } from "../command.js";
import type { Schema } from "../flags.js";

export const commands: Command<Schema>[] = [];
