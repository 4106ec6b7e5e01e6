/** Rate-limit challenges (PROTOCOL.md §12): a 428's body, and answering it with a captcha. */
import { ChallengeRequiredError, InvalidInputError } from '../errors';
import type { ChatRequester, ChatResponse } from '../net/types';
import { ajv, call, fail, parse } from './http';

const validateChallenge = ajv.compile<{ token: string; options?: string[] }>({
  type: 'object',
  properties: {
    token: { type: 'string' },
    options: { type: 'array', items: { type: 'string' }, nullable: true },
  },
  required: ['token'],
});

/** A 428 answer as the typed error: its token and the ways the server takes to answer it. */
export function challengeIn(res: ChatResponse, what: string): ChallengeRequiredError {
  const r = parse(res, validateChallenge, what);
  return new ChallengeRequiredError(r.token, r.options ?? []);
}

/**
 * `PUT /v1/challenge` (PROTOCOL.md §12): answers a 428 with a solved captcha, after which the
 * refused sends can go again. 428 here means the captcha did not pass.
 */
export async function submitCaptchaChallenge(
  requester: ChatRequester,
  args: { token: string; captcha: string },
): Promise<void> {
  const what = 'Answering the challenge';
  const res = await call(requester, 'PUT', '/v1/challenge', {
    type: 'captcha',
    token: args.token,
    captcha: args.captcha,
  });
  if (res.status === 200) return;
  if (res.status === 428)
    throw new ChallengeRequiredError(
      args.token,
      ['captcha'],
      undefined,
      'The captcha did not pass',
    );
  if (res.status === 400 || res.status === 422)
    throw new InvalidInputError(`${what}: the server refused the token or captcha (${res.status})`);
  fail(res, what);
}
