/**
 * Rate-limit challenges (PROTOCOL.md §12): a send Signal answers 428 carries a challenge token; the
 * account then sends nothing more until a solved captcha is handed back with `PUT /v1/challenge`.
 * This keeps the last challenge met, for the account's dialog, and answers it.
 */
import * as api from '../api';
import { ChallengeRequiredError, InvalidInputError } from '../errors';
import type { Logger } from '../log';
import type { ChatRequester } from '../net/types';

export interface PendingChallenge {
  token: string;
  options: string[];
  since: number;
}

export class Challenges {
  private last: PendingChallenge | null = null;

  constructor(private readonly opts: { logger: Logger; now: () => number }) {}

  /** The challenge Signal last asked for, until it is answered. The token names it; no secret. */
  get pending(): PendingChallenge | null {
    return this.last;
  }

  /** Notes the challenge a failed send met (anything else is ignored). */
  noteFailure(e: unknown): void {
    if (e instanceof ChallengeRequiredError)
      this.last = { token: e.token, options: e.options, since: this.opts.now() };
  }

  /**
   * Answers with a solved captcha: the `signalcaptcha://…` link from Signal's captcha page (the
   * prefix may be left off); the token is the challenge's, else the pending one. A captcha that did
   * not pass fails CHALLENGE_REQUIRED.
   */
  async answer(
    chat: () => ChatRequester,
    args: { captcha: string; token?: string },
  ): Promise<void> {
    const captcha =
      typeof args?.captcha === 'string'
        ? args.captcha.trim().replace(/^signalcaptcha:\/\//, '')
        : '';
    if (!captcha) throw new InvalidInputError('Give the solved captcha (signalcaptcha://…)');
    if (args.token !== undefined && (typeof args.token !== 'string' || !args.token.trim()))
      throw new InvalidInputError('The challenge token must be non-empty text');
    const token = args.token?.trim() ?? this.last?.token;
    if (!token) {
      throw new InvalidInputError(
        'No challenge is pending: give the token from the failed send (error.token)',
      );
    }
    await api.submitCaptchaChallenge(chat(), { token, captcha });
    if (this.last?.token === token) this.last = null;
    this.opts.logger.info('challenge answered; refused sends can be retried');
  }
}
