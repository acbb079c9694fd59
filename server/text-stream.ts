// Generated token ids → text deltas for streaming, with stop strings. Two pure state machines:
// - IncrementalDecoder never emits a broken UTF-8 character: byte-level BPE tokens can split a
//   character, and decode() then ends in U+FFFD until the rest arrives (the approach of HF TGI's
//   decode_token: decode a short window and emit only what is new and complete).
// - StopMatcher holds back text that could be the start of a stop string, so a client never
//   receives part of a stop sequence, and cuts the output where the first stop string begins.

export class IncrementalDecoder {
  private ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  /**
   * decodeToken, when given, promises that decoding is concatenative (byte-level BPE, byte
   * tokenizers): decode(a ++ b) = decode(a) + decode(b) whenever neither part splits a character.
   * Then a token that decodes cleanly on its own is emitted without re-decoding a window.
   */
  constructor(private readonly decode: (ids: number[]) => string, private readonly decodeToken?: (id: number) => string) {}

  /** Adds a token; returns the newly completed text ('' when the token ends mid-character). */
  push(token: number): string {
    if (this.decodeToken && this.readOffset === this.ids.length) {
      const piece = this.decodeToken(token);
      if (piece !== '' && !piece.includes('\uFFFD')) {
        this.ids.push(token);
        this.prefixOffset = this.readOffset;
        this.readOffset = this.ids.length;
        return piece;
      }
    }
    this.ids.push(token);
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return '';
  }

  /** Whatever is still held back at the end (possibly with replacement characters). */
  flush(): string {
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}

export class StopMatcher {
  private held = '';
  stopped = false;

  constructor(private readonly stops: string[]) {}

  /** Adds text; returns what may be sent now. After a stop string is seen, returns ''. */
  push(text: string): string {
    if (this.stopped) return '';
    const buf = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = '';
      return buf.slice(0, cut);
    }
    const keep = this.partialSuffix(buf);
    this.held = buf.slice(buf.length - keep);
    return buf.slice(0, buf.length - keep);
  }

  /** The held-back text, released when generation ends without a stop string. */
  flush(): string {
    const out = this.stopped ? '' : this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of buf that is a proper prefix of some stop string. */
  private partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) { best = n; break; }
      }
    }
    return best;
  }
}

/** Token ids → streamed text with stop strings applied. */
export class TextStream {
  private readonly decoder: IncrementalDecoder;
  private readonly matcher: StopMatcher;

  constructor(decode: (ids: number[]) => string, stops: string[], decodeToken?: (id: number) => string) {
    this.decoder = new IncrementalDecoder(decode, decodeToken);
    this.matcher = new StopMatcher(stops);
  }

  get stopped(): boolean { return this.matcher.stopped; }

  push(token: number): string { return this.matcher.push(this.decoder.push(token)); }

  finish(): string { return this.matcher.push(this.decoder.flush()) + this.matcher.flush(); }
}
