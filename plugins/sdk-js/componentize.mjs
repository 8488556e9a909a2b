// Build a JavaScript adapter into a component with the pinned componentize-js:
//   node componentize.mjs TOOLS_DIR ENTRY.js WIT_DIR OUT.wasm
// (called by build.sh, which installs TOOLS_DIR first). The API is used rather
// than `jco componentize`, which cannot read a WIT folder outside its working folder.
import { writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [tools, entry, wit, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: node componentize.mjs TOOLS_DIR ENTRY.js WIT_DIR OUT.wasm');
  process.exit(2);
}
const module = join(tools, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js');
const { componentize } = await import(pathToFileURL(module).href);
const { component } = await componentize({
  sourcePath: entry,
  witPath: wit,
  worldName: 'adapter',
  // Adapters reach the network only through the host's `outbound` interface:
  // leave out the engine's own fetch and incoming-handler support.
  disableFeatures: ['http', 'fetch-event'],
});
const tmp = `${out}.tmp.${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, out);
