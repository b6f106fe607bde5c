import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { ForwardRequest } from '../http/forward.ts';
import { responseHeadersToForward } from '../http/headers.ts';
import { mediaType } from './read-request.ts';
import { filterToolsListBody, type ToolFilter } from './tools-list.ts';

/** A tools/list answer larger than this is refused rather than passed unfiltered. */
const MAX_TOOLS_LIST_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * Sends a `tools/list` request on and answers with the upstream's answer reduced to the tools the
 * caller may call. Unlike forward(), the answer is read whole (bounded) before anything is sent:
 * it has to be rewritten.
 */
export async function forwardToolsList(dispatcher: Dispatcher, request: ForwardRequest & { readonly body: Buffer }, res: ServerResponse, allow: ToolFilter): Promise<void> {
  // An encoded answer could not be read: ask for none.
  const headers = { ...request.headers, 'accept-encoding': 'identity' };
  let answer: Dispatcher.ResponseData;
  try {
    answer = await dispatcher.request({ origin: request.origin, method: request.method, path: request.path, headers, body: request.body });
  } catch (err) {
    if (err instanceof AirlockError) throw err; // a forbidden destination address, refused by the external Agent's connector
    throw new AirlockError(ErrorCode.UpstreamUnavailable, `${request.describe}: ${errorMessage(err)}`, { cause: err });
  }
  const out = responseHeadersToForward(answer.headers);
  const encoding = answer.headers['content-encoding'];
  if (answer.statusCode !== 200) {
    // Not a tools/list result (an error, a 202): nothing to filter.
    res.writeHead(answer.statusCode, out);
    await pipeline(answer.body, res);
    return;
  }
  if (encoding !== undefined && encoding !== 'identity') {
    await answer.body.dump();
    throw new AirlockError(ErrorCode.UpstreamUnavailable, `the tools/list answer is encoded (${String(encoding)}) and cannot be filtered`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of answer.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_TOOLS_LIST_ANSWER_BYTES) {
        answer.body.destroy();
        throw new AirlockError(ErrorCode.UpstreamUnavailable, `the tools/list answer is larger than ${MAX_TOOLS_LIST_ANSWER_BYTES} bytes and cannot be filtered`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    // The upstream failing mid-answer is an upstream failure (502), not an internal one.
    if (err instanceof AirlockError) throw err;
    throw new AirlockError(ErrorCode.UpstreamUnavailable, `${request.describe}: the tools/list answer ended early: ${errorMessage(err)}`, { cause: err });
  }
  const body = await filterToolsListBody(mediaType(answer.headers['content-type']), Buffer.concat(chunks), allow);
  out['content-length'] = body.length;
  res.writeHead(200, out);
  res.end(body);
}
