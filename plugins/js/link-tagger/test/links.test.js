// `npm test`: the link finding run by Node, without the component.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decide, linkDomains, parseConfig } from '../src/links.js';

const defaults = parseConfig(() => undefined);
const config = (values) => parseConfig((k) => values[k]);

function message(body, extra = {}) {
  return {
    id: 'm1',
    chatId: 'c1',
    sender: 'a@c.us',
    recipient: 'b@c.us',
    author: undefined,
    body,
    truncated: false,
    kind: 'chat',
    timestampMs: 1700000000000n,
    fromMe: false,
    hasMedia: false,
    ack: 2,
    quotedId: undefined,
    tags: [],
    attributes: [],
    ...extra,
  };
}

test('defaults', () => {
  assert.deepEqual(defaults, { tag: 'link', attribute: 'links', maxDomains: 20, ignore: [] });
});

test('finds the domains of links with a scheme or www., in order, once', () => {
  const body =
    'see https://Example.com/a?b=1, then www.wasync.dev/docs. ' +
    'And http://www.example.com/again (again) or HTTPS://sub.Example.org:8443/x!';
  assert.deepEqual(linkDomains(body, defaults), ['example.com', 'wasync.dev', 'sub.example.org']);
});

test('ignores text that is not a link to a site', () => {
  for (const body of [
    'no link here',
    'mail me at ana@example.com',
    'ftp://example.com/file',
    'http://localhost:3000/x',
    'https://',
    'www.',
    'swww.example.com',
  ]) {
    assert.deepEqual(linkDomains(body, defaults), [], body);
  }
});

test('ignore-domains drops a domain and its subdomains, not look-alikes', () => {
  const opts = config({ 'ignore-domains': 'example.com\n*.corp.test\n# comment\n' });
  assert.deepEqual(opts.ignore, ['example.com', 'corp.test']);
  const body = 'https://example.com https://docs.example.com https://notexample.com https://a.corp.test';
  assert.deepEqual(linkDomains(body, opts), ['notexample.com']);
});

test('a message without a link is kept, one with a link is tagged', () => {
  assert.deepEqual(decide(message('hello'), defaults), { tag: 'keep' });
  assert.deepEqual(decide(message(undefined), defaults), { tag: 'keep' });
  const out = decide(message('read https://example.com/x'), defaults);
  assert.equal(out.tag, 'replace');
  assert.deepEqual(out.val.tags, ['link']);
  assert.deepEqual(out.val.attributes, [['links', 'example.com']]);
  assert.equal(out.val.timestampMs, 1700000000000n);
  assert.equal(out.val.body, 'read https://example.com/x');
});

test('earlier tags and attributes are kept and merged', () => {
  const msg = message('https://b.example and https://a.example', {
    tags: ['link', 'billing'],
    attributes: [['links', 'a.example'], ['pii.redacted', '1']],
  });
  const out = decide(msg, defaults);
  assert.deepEqual(out.val.tags, ['link', 'billing']);
  assert.deepEqual(out.val.attributes, [['links', 'a.example,b.example'], ['pii.redacted', '1']]);
});

test('config: custom tag, no attribute, a cap on domains', () => {
  const opts = config({ tag: 'has-url', attribute: '', 'max-domains': '2' });
  const out = decide(message('https://a.example https://b.example https://c.example'), opts);
  assert.deepEqual(out.val.tags, ['has-url']);
  assert.deepEqual(out.val.attributes, []);
  const capped = decide(
    message('https://a.example https://b.example https://c.example'),
    config({ 'max-domains': '2' }),
  );
  assert.deepEqual(capped.val.attributes, [['links', 'a.example,b.example']]);
});

test('config: nonsense is refused with a message', () => {
  assert.throws(() => config({ tag: ' ' }), /tag/);
  for (const max of ['0', '-1', '1.5', 'ten', '1001']) {
    assert.throws(() => config({ 'max-domains': max }), /max-domains/, max);
  }
});

test('stops at max-domains', () => {
  const opts = config({ 'max-domains': '2' });
  assert.deepEqual(linkDomains('www.a.example www.b.example www.c.example', opts), ['a.example', 'b.example']);
});

test('hostile bodies take linear time', () => {
  // Would backtrack quadratically in a `[...]+$` or `\b...` regex.
  for (const body of [
    `http://${','.repeat(60000)}a`,
    `${'www'.repeat(20000)}.`,
    'http://'.repeat(9000),
    `x${'www.'.repeat(16000)}`,
  ]) {
    const t = performance.now();
    linkDomains(body, defaults);
    assert.ok(performance.now() - t < 200, `${body.slice(0, 20)}...`);
  }
});
