// Option parsers the scripts' commander programs share.
import { InvalidArgumentError } from 'commander';

/** Parses a whole number in [min, max]; commander reports the message with the option's name. */
export const integerOption = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(max === Number.MAX_SAFE_INTEGER ? `${name} must be a whole number of at least ${min}` : `${name} must be an integer from ${min} to ${max}`);
  }
  return n;
};
