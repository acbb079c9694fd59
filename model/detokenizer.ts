// Generated token ids → text, incrementally, with stop token ids and stop strings: the one
// incremental detokenizer of the project (the server's streams and model/generate.ts both use it).
// - Never emits a broken UTF-8 character: byte-level BPE tokens can split a character, and
//   decode() then ends in U+FFFD until the rest arrives (the approach of HF TGI's decode_token:
//   decode a short window and emit only what is new and complete). With decodeToken (concatenative
//   tokenizers) a token that decodes cleanly on its own is emitted without re-decoding a window.
// - Stop token ids end the text at that token (its text is left out unless includeStop).
// - Stop strings: text that could be the start of one is held back, so a client never receives
//   part of a stop sequence, and the output is cut where the first one begins (or, with
//   includeStop, where it ends: vLLM's include_stop_str_in_output).

export interface DetokenizerOptions {
  decode: (ids: readonly number[]) => string;
  /** Only for concatenative tokenizers: decode(a ++ b) = decode(a) + decode(b) when neither splits a character. */
  decodeToken?: (id: number) => string;
  stopTokenIds?: readonly number[];
  stopStrings?: readonly string[];
  /** Keep the stop string / stop token's text in the output. */
  includeStop?: boolean;
}

export type StopCause = { kind: 'token'; tokenId: number } | { kind: 'string'; text: string };

export class Detokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  private held = '';
  private readonly stopIds: ReadonlySet<number>;
  private readonly stops: readonly string[];
  /** Why the text ended early (null while it has not). */
  stoppedBy: StopCause | null = null;

  constructor(private readonly opts: DetokenizerOptions) {
    this.stopIds = new Set(opts.stopTokenIds ?? []);
    this.stops = (opts.stopStrings ?? []).filter((s) => s.length > 0);
  }

  get stopped(): boolean {
    return this.stoppedBy !== null;
  }

  /** Adds a token; returns the text that may be sent now ('' once stopped). */
  push(token: number): string {
    if (this.stopped) return '';
    if (this.stopIds.has(token)) {
      const own = this.opts.includeStop ? this.match(this.decodeNext(token)) : '';
      const rest = this.stopped ? '' : this.match(this.flushDecoder()) + this.releaseHeld();
      this.stoppedBy ??= { kind: 'token', tokenId: token };
      return own + rest;
    }
    return this.match(this.decodeNext(token));
  }

  /** The rest, when generation ends: held-back text, and a broken tail as U+FFFD. */
  flush(): string {
    if (this.stopped) return '';
    const out = this.match(this.flushDecoder());
    return out + (this.stopped ? '' : this.releaseHeld());
  }

  private releaseHeld(): string {
    const out = this.held;
    this.held = '';
    return out;
  }

  private decodeNext(token: number): string {
    const { decode, decodeToken } = this.opts;
    if (decodeToken && this.readOffset === this.ids.length) {
      const piece = decodeToken(token);
      if (piece !== '' && !piece.includes('\uFFFD')) {
        this.ids.push(token);
        this.prefixOffset = this.readOffset;
        this.readOffset = this.ids.length;
        return piece;
      }
    }
    this.ids.push(token);
    const prefix = decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return '';
  }

  private flushDecoder(): string {
    const prefix = this.opts.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.opts.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }

  /** Applies the stop strings to new text; returns what may be sent now. */
  private match(text: string): string {
    if (this.stops.length === 0) return text;
    const buf = this.held + text;
    let cut = -1;
    let stop = '';
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) {
        cut = i;
        stop = s;
      }
    }
    if (cut >= 0) {
      this.stoppedBy = { kind: 'string', text: stop };
      this.held = '';
      return buf.slice(0, this.opts.includeStop ? cut + stop.length : cut);
    }
    const keep = this.partialSuffix(buf);
    this.held = buf.slice(buf.length - keep);
    return buf.slice(0, buf.length - keep);
  }

  /** Length of the longest suffix of buf that is a proper prefix of some stop string. */
  private partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
