/**
 * The map of src/ holds: no import cycle (type-only imports and lazy `import()` count too), and
 * docs/architecture.md names every folder and file of src/. Imports are read with TypeScript's own
 * pre-processor, which sees every import and export form.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { repoRoot } from './support/paths.ts';

const srcRoot = join(repoRoot, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|cjs)$/.test(name) ? [path] : [];
  });
}

/** Each file of src/ (tests left out: nothing imports them) and the files of src/ it imports. */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = importedFiles
      .map((i) => i.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => resolve(dirname(file), spec))
      .filter((target) => target.startsWith(srcRoot));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Every cycle's files, one per strongly connected component of more than one file (or a file importing itself). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  // Tarjan's algorithm.
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    indices.set(node, index);
    low.set(node, index);
    index++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!indices.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) ?? 0, low.get(next) ?? 0));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) ?? 0, indices.get(next) ?? 0));
      }
    }
    if (low.get(node) !== indices.get(node)) return;
    const component: string[] = [];
    for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
      onStack.delete(top);
      component.push(top);
      if (top === node) break;
    }
    if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.sort());
  };
  for (const node of graph.keys()) if (!indices.has(node)) visit(node);
  return found;
}

test('the cycle finder finds a cycle through a type-only import and none in a tree', () => {
  const a = join(srcRoot, 'a.ts');
  const b = join(srcRoot, 'b.ts');
  const c = join(srcRoot, 'c.ts');
  assert.deepEqual(
    cycles(
      new Map([
        [a, [b]],
        [b, [c]],
        [c, [a]],
      ]),
    ),
    [[a, b, c]],
    'a → b → c → a',
  );
  assert.deepEqual(
    cycles(
      new Map([
        [a, [b, c]],
        [b, [c]],
        [c, []],
      ]),
    ),
    [],
    'a tree has no cycle',
  );
  assert.deepEqual(cycles(new Map([[a, [a]]])), [[a]], 'a file importing itself');
  const text = "import type { X } from './b.ts';\nexport { y } from './c.ts';\nconst z = await import('./d.ts');\n";
  const seen = ts.preProcessFile(text, true, true).importedFiles.map((i) => i.fileName);
  assert.deepEqual(seen, ['./b.ts', './c.ts', './d.ts'], 'type-only imports, re-exports and import() are all seen');
});

test('no import cycle in src/, type-only imports included', () => {
  const files = sourceFiles(srcRoot).filter((f) => !f.endsWith('.test.ts'));
  const found = cycles(importGraph(files)).map((c) => c.map((f) => relative(repoRoot, f)).join(' ↔ '));
  assert.deepEqual(found, [], `import cycles in src/:\n${found.join('\n')}`);
});

test("docs/architecture.md names every folder of src/, and every file under its folder's heading", () => {
  const map = readFileSync(join(repoRoot, 'docs/architecture.md'), 'utf8');
  const files = sourceFiles(srcRoot).filter((f) => !f.endsWith('.test.ts') && !f.endsWith('.generated.ts'));
  const folders = [...new Set(files.map((f) => relative(repoRoot, dirname(f)) + '/'))];
  /** The text under the `### \`folder\`` heading, up to the next heading. */
  const section = (folder: string): string | undefined => {
    const start = map.indexOf(`### \`${folder}\``);
    if (start < 0) return undefined;
    const rest = map.slice(start + 4);
    const end = rest.search(/^#{1,3} /m);
    return end < 0 ? rest : rest.slice(0, end);
  };
  const missing: string[] = [];
  for (const folder of folders) {
    const text = section(folder);
    if (text === undefined) {
      missing.push(`the heading ### \`${folder}\``);
      continue;
    }
    for (const file of files.filter((f) => relative(repoRoot, dirname(f)) + '/' === folder)) {
      const name = file.slice(file.lastIndexOf('/') + 1);
      if (!text.includes(`\`${name}\``)) missing.push(`${folder}${name}`);
    }
  }
  assert.deepEqual(missing, [], `docs/architecture.md does not name: ${missing.join(', ')}`);
});
