/**
 * A URL as an error message may show it: a user and password before an `@`
 * (`nats://ops:secret@host`, `ftp://user:secret@host`, or `user:secret@host`
 * with no scheme) as `***@`.
 */
export function hideUserinfo(url: string): string {
  return url.replace(/^([^@/]*\/\/)?[^@/]*@/, "$1***@");
}
