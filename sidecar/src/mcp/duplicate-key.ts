/**
 * The first key that appears twice in one object of a JSON text, or undefined. JSON.parse keeps the
 * last duplicate and other parsers keep the first, so a body with one could be judged as one call
 * here and run as another by the server: such a body is not judged at all. `text` must already be
 * valid JSON (JSON.parse accepted it), so this only tracks strings, nesting and commas.
 */
export function duplicateKey(text: string): string | undefined {
  // One key set per open object; null for an open array (its strings are values).
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      while (text.charCodeAt(j) !== 0x22) {
        if (text.charCodeAt(j) === 0x5c /* \ */) {
          escaped = true;
          j += 2;
        } else j += 1;
      }
      const keys = stack[stack.length - 1];
      if (expectKey && keys !== undefined && keys !== null) {
        // "\u006dethod" is "method": compare keys as parsed, not as written.
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      expectKey = top !== undefined && top !== null;
    }
  }
  return undefined;
}
