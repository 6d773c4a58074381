// Plain-language text for the server's error codes and the connection states.

const ERRORS = {
  bad_json: 'The server could not read a message from this page. Reload the page.',
  unknown_type: 'The server did not understand a request from this page. Reload the page.',
  bad_name: 'That name is not allowed: use 1 to 32 visible characters, not starting with "guest-".',
  bad_field: 'The server refused a request from this page. Reload the page.',
  name_taken: 'Someone is already using that name. Pick another one.',
  bad_room: 'That room name is not allowed: use 1 to 32 visible characters.',
  not_in_room: 'You are not in that room any more. Join it again.',
  no_such_user: 'Nobody with that name is online.',
  too_long: 'That message is too long (at most 4000 characters).',
  empty_text: 'An empty message cannot be sent.',
  rate_limited: 'You are sending too fast. Wait a moment, then try again.',
  too_many_rooms: 'You are in too many rooms (20 at most). Leave one before joining another.',
  server_room_limit: 'The server has no room for another room right now. Join an existing one.',
  internal: 'The server had a problem with that request. Try again.',
  binary_not_supported: 'The server only accepts text messages.',
  name_bound: 'The name for this connection is fixed and cannot be changed.',
  offline: 'Not connected right now. Try again when the connection is back.',
  lost: 'The connection dropped before the server confirmed it. Retry if it did not arrive.',
  timeout: 'The server did not answer in time.',
  forbidden: 'That room is private, and this connection may not use it.',
  filtered: 'The server refused that message.',
  unavailable: 'The chat is briefly unavailable (the server cannot reach its database). Wait a moment, check the room, then retry.',
};

/** A sentence for an error reply ({code, message}) or an Error with a `code`. */
export function errorText(err) {
  const code = err && err.code;
  if (code && ERRORS[code]) return ERRORS[code];
  const detail = err && typeof err.message === 'string' && err.message ? err.message : String(code || 'unknown error');
  return 'Something went wrong: ' + detail;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

/** Short time for the message list: "14:05", or "Mar 3, 14:05" when it is not from today. */
export function shortTime(ts, now = new Date()) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = d.toDateString() === now.toDateString();
  return sameDay ? timeFmt.format(d) : dayFmt.format(d) + ', ' + timeFmt.format(d);
}

export function fullTime(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? '' : fullFmt.format(d);
}
