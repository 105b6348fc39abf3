/**
 * The manual holds together: every relative link in README.md, CHANGELOG.md, CONTRIBUTING.md, SECURITY.md and
 * docs/*.md leads to a file that exists, every `#anchor` to a heading of its page (as GitHub slugs headings), and
 * every repository path the pages name in code (`test/x.e2e.test.ts`, `src/jobs/state.ts`…) exists. The README stays
 * a front page of at most 3,000 words.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import GithubSlugger from 'github-slugger';
import { Lexer, type Token, type Tokens } from 'marked';
import { repoRoot } from './support/paths.ts';

const PAGES = [
  'README.md',
  'CHANGELOG.md',
  'CONTRIBUTING.md',
  'SECURITY.md',
  ...readdirSync(join(repoRoot, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

/** Every token, depth first (marked nests inline tokens in blocks, and items in lists and tables). */
function* walk(tokens: readonly Token[]): Generator<Token> {
  for (const token of tokens) {
    yield token;
    const nested = token as { tokens?: Token[]; items?: Tokens.ListItem[]; header?: Tokens.TableCell[]; rows?: Tokens.TableCell[][] };
    if (nested.tokens) yield* walk(nested.tokens);
    if (nested.items) yield* walk(nested.items);
    for (const cell of [...(nested.header ?? []), ...(nested.rows ?? []).flat()]) yield* walk(cell.tokens);
  }
}

const parsed = new Map<string, Token[]>();
function tokensOf(page: string): Token[] {
  let tokens = parsed.get(page);
  if (!tokens) {
    tokens = Lexer.lex(readFileSync(join(repoRoot, page), 'utf8'));
    parsed.set(page, tokens);
  }
  return tokens;
}

/** A heading's text as GitHub renders it (code spans keep their text; markup goes). */
function plainText(tokens: readonly Token[]): string {
  return tokens
    .map((token) => {
      const inner = (token as { tokens?: Token[] }).tokens;
      if (inner) return plainText(inner);
      if (token.type === 'html') return '';
      return 'text' in token && typeof token.text === 'string' ? token.text : '';
    })
    .join('');
}

/** The anchors GitHub gives a page's headings (a repeated heading gets -1, -2…). */
function anchorsOf(page: string): Set<string> {
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  for (const token of walk(tokensOf(page))) {
    if (token.type === 'heading') anchors.add(slugger.slug(plainText((token as Tokens.Heading).tokens)));
  }
  return anchors;
}

test('every page of the manual exists and parses', () => {
  for (const page of PAGES) assert.ok(tokensOf(page).length > 0, `${page} is empty`);
  for (const needed of ['protocol', 'configuration', 'writing-jobs', 'control-server', 'operations', 'security', 'development', 'benchmarks']) {
    assert.ok(PAGES.includes(`docs/${needed}.md`), `docs/${needed}.md is missing`);
  }
});

test('every relative link and #anchor resolves', () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    for (const token of walk(tokensOf(page))) {
      if (token.type !== 'link' && token.type !== 'image') continue;
      const href = (token as Tokens.Link).href;
      if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // https:, mailto:
      const [path = '', anchor] = href.split('#', 2);
      const target = path === '' ? page : relative(repoRoot, resolve(dirname(join(repoRoot, page)), decodeURIComponent(path)));
      if (!existsSync(join(repoRoot, target))) {
        broken.push(`${page}: ${href} (no ${target})`);
      } else if (anchor !== undefined && anchor !== '') {
        if (!target.endsWith('.md')) broken.push(`${page}: ${href} (an anchor into a file that is not a page)`);
        else if (!anchorsOf(target).has(decodeURIComponent(anchor))) broken.push(`${page}: ${href} (${target} has no heading #${anchor})`);
      }
    }
  }
  assert.deepEqual(broken, [], 'dead links');
});

/** Files the Kubernetes design (docs/kubernetes-executor.md) proposes: named before they exist. */
const PROPOSED = new Set(['src/executor/kubernetes/', 'src/executor/contract.ts']);

test('every repository path named in code exists', () => {
  const missing: string[] = [];
  for (const page of PAGES) {
    for (const token of walk(tokensOf(page))) {
      if (token.type !== 'codespan') continue;
      const text = (token as Tokens.Codespan).text;
      // A path into the repository, not a pattern or a placeholder (src/**/*.test.ts, dist/sea/foreman, <dir>), nor
      // what an install or a build makes (runtime/node_modules/…).
      if (!/^(src|test|scripts|examples|bench|docs|bin|runtime)\/[\w./-]+$/.test(text) || text.includes('node_modules')) continue;
      if (!existsSync(join(repoRoot, text)) && !(page === 'docs/kubernetes-executor.md' && PROPOSED.has(text))) missing.push(`${page}: ${text}`);
    }
  }
  assert.deepEqual(missing, [], 'paths the pages name that do not exist');
});

test('the README is a front page: at most 3,000 words', () => {
  const words = readFileSync(join(repoRoot, 'README.md'), 'utf8').split(/\s+/).filter(Boolean).length;
  assert.ok(words <= 3000, `README.md has ${words} words`);
});
