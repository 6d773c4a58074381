// Unit tests of the page's pure parts (no browser): backoff, message store, error words.
//   node --test tests/browser/unit.mjs
import test from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, chatUrl, takeToken, tokenExpired } from '../../public/client.js';
import { Conversation, Store, sameName } from '../../public/store.js';
import { errorText } from '../../public/words.js';

test('backoff: full jitter between 0 and min(cap, base * 2^attempt)', () => {
  assert.equal(backoffDelay(0, 250, 10000, () => 0), 0);
  assert.equal(backoffDelay(0, 250, 10000, () => 0.999999), 249);
  assert.equal(backoffDelay(3, 250, 10000, () => 0.5), 1000);
  assert.equal(backoffDelay(10, 250, 10000, () => 0.999999), 9999);
  assert.equal(backoffDelay(1000, 250, 10000, () => 0.5), 5000, 'no overflow for a long outage');
});

test('chat URL follows the page: ws for http, wss for https', () => {
  assert.equal(chatUrl({ protocol: 'http:', host: '192.168.1.5:8080' }), 'ws://192.168.1.5:8080/chat');
  assert.equal(chatUrl({ protocol: 'https:', host: 'chat.example' }), 'wss://chat.example/chat');
});

test('chat URL carries the access token, encoded', () => {
  assert.equal(chatUrl({ protocol: 'http:', host: 'h' }, 'a.b+c/d'), 'ws://h/chat?token=a.b%2Bc%2Fd');
  assert.equal(chatUrl({ protocol: 'http:', host: 'h' }, ''), 'ws://h/chat');
});

test('the token is taken out of the page address, other parameters stay', () => {
  assert.deepEqual(takeToken('http://h/'), { token: '', clean: null });
  assert.deepEqual(takeToken('http://h/?backoff=100'), { token: '', clean: null });
  assert.deepEqual(takeToken('http://h/?token=SECRET123'), { token: 'SECRET123', clean: '/' });
  assert.deepEqual(takeToken('http://h/?backoff=100&token=a.b.c'), { token: 'a.b.c', clean: '/?backoff=100' });
  assert.deepEqual(takeToken('http://h/#token=x%2By'), { token: 'x+y', clean: '/' });
  assert.deepEqual(takeToken('http://h/?a=1#token=t&b=2'), { token: 't', clean: '/?a=1#b=2' });
});

test('a JWT whose exp has passed is seen as expired; other tokens never are', () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const jwt = (claims) => `${b64({ alg: 'HS256' })}.${b64(claims)}.sig`;
  assert.equal(tokenExpired(jwt({ exp: 1000 }), 1000 * 1000), true);
  assert.equal(tokenExpired(jwt({ exp: 1001 }), 1000 * 1000), false);
  assert.equal(tokenExpired(jwt({ name: 'carol' }), 1000 * 1000), false, 'no exp');
  assert.equal(tokenExpired('file-token', 0), false);
  assert.equal(tokenExpired('a.%%%.c', 0), false, 'not base64 JSON');
});

const msg = (id, text = `m${id}`) => ({ type: 'message', id, ts: 1700000000000 + id, room: 'dev', from: 'bob', text });

test('a conversation keeps messages once each, in id order, whatever the arrival order', () => {
  const c = new Conversation('room', 'dev');
  assert.deepEqual(c.add([msg(5), msg(7)]).map((m) => m.id), [5, 7]);
  assert.deepEqual(c.add([msg(7), msg(9)]).map((m) => m.id), [9], 'a live copy of 7 is not added twice');
  assert.deepEqual(c.add([msg(1), msg(3)]).map((m) => m.id), [1, 3], 'an older page goes in front');
  assert.deepEqual(c.add([msg(8), msg(6), msg(5)]).map((m) => m.id), [6, 8], 'catch-up fills the middle');
  assert.deepEqual(c.ids, [1, 3, 5, 6, 7, 8, 9]);
  assert.equal(c.idAfter(5), 6);
  assert.equal(c.idAfter(4), 5);
  assert.equal(c.idAfter(9), undefined);
  assert.equal(c.oldestId, 1);
  assert.equal(c.newestId, 9);
  assert.deepEqual(c.add([{ id: 'x', text: 1 }, null, { id: 10 }]), [], 'malformed entries are ignored');
});

test('rooms and names are matched case-insensitively; DMs file under the other person', () => {
  const s = new Store();
  assert.equal(s.room('Dev'), s.room('dev'));
  assert.ok(sameName('Alice', 'alice'));
  const toBob = { type: 'message', id: 1, ts: 0, to: 'bob', from: 'Alice', text: 'psst' };
  const fromBob = { type: 'message', id: 2, ts: 0, to: 'alice', from: 'Bob', text: 'hi' };
  assert.equal(s.convFor(toBob, 'alice'), s.convFor(fromBob, 'alice'));
  assert.equal(s.convFor(toBob, 'alice').kind, 'dm');
});

test('errors read as sentences, unknown codes fall back to the server text', () => {
  assert.match(errorText({ code: 'name_taken' }), /already using that name/);
  assert.match(errorText({ code: 'rate_limited' }), /too fast/);
  assert.equal(errorText({ code: 'new_code', message: 'details' }), 'Something went wrong: details');
});
