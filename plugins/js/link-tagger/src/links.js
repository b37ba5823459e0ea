// The link finding of `link-tagger`, free of any host import, so Node runs
// its tests (`npm test`) on the very code the component embeds.

/**
 * Where web links start, as people write them: with a scheme, or `www.`
 * (searched in lower-cased text). Links are found with `indexOf`, not one
 * regular expression over the whole body: SpiderMonkey runs regular
 * expressions in an interpreter inside WebAssembly (no JIT), which costs
 * tens of nanoseconds per character, while `indexOf` is native code.
 */
const STARTS = ['http://', 'https://', 'www.'];

/** A character that ends a link. */
const LINK_END = /[\s<>"'`]/g;

/** A character that may not come right before a link (as `\b` in a regex). */
const WORD = /[a-z0-9_]/;

/** Punctuation that ends a sentence rather than the link before it. */
const TRAILING = '.,;:!?\'")]}';

/**
 * The options `link-tagger` runs with, from its manifest's `[config]`
 * through `get(key)` (a string, or undefined when the key is absent).
 * Throws an `Error` naming a value that cannot be meant.
 */
export function parseConfig(get) {
  const tag = (get('tag') ?? 'link').trim();
  if (tag === '') throw new Error('config `tag` is empty');
  const attribute = (get('attribute') ?? 'links').trim();
  const rawMax = (get('max-domains') ?? '20').trim();
  const maxDomains = Number(rawMax);
  if (!Number.isInteger(maxDomains) || maxDomains < 1 || maxDomains > 1000) {
    throw new Error(
      `config \`max-domains\` must be a whole number from 1 to 1000, not ${JSON.stringify(rawMax)}`,
    );
  }
  const ignore = (get('ignore-domains') ?? '')
    .split('\n')
    .map((d) => d.trim().toLowerCase().replace(/^\*?\./, ''))
    .filter((d) => d !== '' && !d.startsWith('#'));
  return { tag, attribute, maxDomains, ignore };
}

/** `host` with a leading `www.` dropped: `www.example.com` is `example.com`. */
function siteOf(host) {
  return host.startsWith('www.') ? host.slice(4) : host;
}

/** True when `host` is one of `domains` or a subdomain of one. */
function ignored(host, domains) {
  return domains.some((d) => host === d || host.endsWith(`.${d}`));
}

/**
 * The first `opts.maxDomains` distinct domains `body` links to, lower-case,
 * without `www.`, in order of first appearance; links to ignored domains and
 * text that does not parse as a URL with a dotted host are left out.
 */
export function linkDomains(body, opts) {
  const found = [];
  for (const link of linkTexts(body.toLowerCase())) {
    if (found.length >= opts.maxDomains) break;
    let cut = link.length;
    while (cut > 0 && TRAILING.includes(link[cut - 1])) cut--;
    const text = link.slice(0, cut);
    let host;
    try {
      host = new URL(text.startsWith('www.') ? `http://${text}` : text).hostname;
    } catch {
      continue;
    }
    host = siteOf(host.endsWith('.') ? host.slice(0, -1) : host);
    if (!host.includes('.') || ignored(host, opts.ignore) || found.includes(host)) continue;
    found.push(host);
  }
  return found;
}

/**
 * The links in lower-case `text`, in order: from a start in `STARTS` not
 * preceded by a letter, digit or `_`, to the first space, `<`, `>`, quote or
 * backtick. The work is linear in the length of the text, whatever it
 * holds (no regular expression that could backtrack).
 */
function* linkTexts(text) {
  // Where each start occurs next at or after `from` (-1: no more).
  const next = STARTS.map((s) => text.indexOf(s));
  let from = 0;
  for (;;) {
    let start = -1;
    for (let k = 0; k < STARTS.length; k++) {
      if (next[k] >= 0 && next[k] < from) next[k] = text.indexOf(STARTS[k], from);
      if (next[k] >= 0 && (start < 0 || next[k] < start)) start = next[k];
    }
    if (start < 0) return;
    if (start > 0 && WORD.test(text[start - 1])) {
      from = start + 1;
      continue;
    }
    LINK_END.lastIndex = start;
    const end = LINK_END.exec(text)?.index ?? text.length;
    yield text.slice(start, end);
    from = end;
  }
}

/**
 * What to do with one message (a `message` record of the WIT): `keep` when it
 * has no link, else `replace` with the tag and the domains attribute added
 * (merged with what an earlier plugin put there). The body is handed back
 * unchanged, so a truncated body is stored in full.
 */
export function decide(msg, opts) {
  if (msg.body === undefined || msg.body === null) return { tag: 'keep' };
  const domains = linkDomains(msg.body, opts);
  if (domains.length === 0) return { tag: 'keep' };
  const tags = msg.tags.includes(opts.tag) ? msg.tags : [...msg.tags, opts.tag];
  let attributes = msg.attributes;
  if (opts.attribute !== '') {
    const at = attributes.findIndex(([k]) => k === opts.attribute);
    const earlier = at < 0 ? [] : attributes[at][1].split(',').filter((d) => d !== '');
    const merged = [...new Set([...earlier, ...domains])].slice(0, opts.maxDomains);
    const entry = [opts.attribute, merged.join(',')];
    attributes = at < 0
      ? [...attributes, entry]
      : attributes.map((kv, i) => (i === at ? entry : kv));
  }
  return { tag: 'replace', val: { ...msg, tags, attributes } };
}
