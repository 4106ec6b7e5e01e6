/** The package's example flows and the Node-RED core nodes they use, for the node tests. */
import fs from 'node:fs';
import path from 'node:path';

export type FlowNode = Record<string, unknown> & { id: string; type: string };

/** A Node-RED core node's module (the test helper loads only the nodes it is given). */
export const coreNode = (file: string): unknown =>
  require(path.join(path.dirname(require.resolve('@node-red/nodes/package.json')), 'core', file));

// The package's examples/: two levels up from source (test/nodes), three when built (dist/test/nodes).
export const examplesDir = [
  path.join(__dirname, '..', '..', 'examples'),
  path.join(__dirname, '..', '..', '..', 'examples'),
].find((d) => fs.existsSync(d)) as string;

/** One example flow's nodes, as the editor's import reads the file. */
export const readExample = (file: string): FlowNode[] =>
  JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
