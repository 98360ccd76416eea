// Entry for bundling bench/threads.ts on its own (the GPU machine's CPU cores; ../shared/gpu/pack.sh): runs it with
// this process's arguments and exits.
import { main } from "./threads.js";

await main(process.argv.slice(2));
process.exit(0);
