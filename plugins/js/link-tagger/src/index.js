// `link-tagger`: tags messages whose body links to a web site and records
// the sites' domains in an attribute, so consumers can find shared links
// (or keep a list of the sites a chat points to) without parsing bodies.
//
// The same `transformer` world as the Rust plugins (wit/plugin.wit), built
// into a component by ComponentizeJS (scripts/build-plugins.sh).
//
// Config (manifest `[config]`, read with `config-get`):
// - `tag`: the tag added to a message with a link (default `link`).
// - `attribute`: the attribute that lists the linked domains, comma-separated
//   (default `links`; empty for none).
// - `ignore-domains`: one domain per line (a TOML array); links to it or its
//   subdomains do not count.
// - `max-domains`: most domains kept in the attribute (default 20).

import { configGet, log } from 'wasync:plugin/host@0.1.0';
import { decide, parseConfig } from './links.js';

// The options, or why there are none. Read at the first call, never at the
// top level: ComponentizeJS runs the top level once at build time (the
// Wizer snapshot), where the host and the manifest are not there yet. One
// instance serves one chat, so this is read once per chat.
let options;

function currentOptions() {
  if (options === undefined) {
    try {
      const opts = parseConfig(configGet);
      options = { opts };
      log(
        'debug',
        `tag ${JSON.stringify(opts.tag)}, attribute ${JSON.stringify(opts.attribute)}, ` +
          `${opts.ignore.length} ignored domains, at most ${opts.maxDomains} domains`,
      );
    } catch (e) {
      options = { error: e instanceof Error ? e.message : String(e) };
    }
  }
  if (options.error !== undefined) {
    // An object with `payload` becomes the `plugin-error` of the result;
    // any other exception is a bug and traps.
    throw { payload: { code: 'bad-config', message: options.error } };
  }
  return options.opts;
}

export const messageTransform = {
  transformBatch(_ctx, msgs) {
    const opts = currentOptions();
    return msgs.map((m) => decide(m, opts));
  },
};
