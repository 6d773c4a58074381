//! [`ChatConfig`]: every bound of the chat a client can hit, with its reason.

use std::path::PathBuf;

use super::Fsync;

/// The chat's limits and storage. Every bound a client can hit is here, with its reason.
///
/// ```
/// let mut config = wschat::Config::default();
/// config.chat.data_dir = Some(std::env::temp_dir().join("wschat-doc-example"));
/// config.chat.history_per_room = 200;
/// config.chat.max_text_chars = 1000;
/// assert_eq!(config.chat.default_room, "lobby");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChatConfig {
    /// Where the history log lives; `None` (the default) keeps history in memory only and
    /// never touches the disk.
    pub data_dir: Option<PathBuf>,
    /// When the log is synced to stable storage. Default [`Fsync::Batch`]: one `fdatasync`
    /// per dispatcher batch that wrote something, so a message anyone saw survives power loss
    /// and the cost is shared by the batch.
    pub fsync: Fsync,
    /// Longest message text, in characters. Default 4000: a long paste or a code snippet fits,
    /// and 64 KiB frames leave room for it even fully escaped.
    pub max_text_chars: usize,
    /// Longest user or room name, in characters after trimming. Default 32: fits a user list
    /// column and any real name.
    pub max_name_chars: usize,
    /// Rooms one connection may be in at once. Default 20: a rename or disconnect sends one
    /// `presence` per room, so this bounds the fan-out a single client can cause.
    pub max_rooms_per_client: usize,
    /// Rooms the server holds (with members or with history). Default 1000. When full, a
    /// new room is refused with `server_room_limit`: no room is retired to make place, since
    /// that would let anyone erase a quiet room's history by creating rooms. Bounds history
    /// memory together with the next two. Lowering it keeps the rooms a restart reads back.
    pub max_rooms: usize,
    /// Rooms one client may create a minute, in bursts of as many; joining a room that
    /// exists is not limited. Default 10: a person opening rooms by hand makes a few, while a
    /// script from one address needs `max_rooms` / 10 minutes (100 by default) to fill the
    /// server, long enough for an operator to notice. A client is its address when the
    /// server passes it (`Chat::connect_from`), else its connection. 0 = no limit.
    pub rooms_created_per_minute: usize,
    /// Messages of history kept per room, in memory and (compacted) on disk. Default 1000.
    pub history_per_room: usize,
    /// Bytes of history kept per room, counted as sent: the text and name as escaped in the
    /// JSON (a control character is 6 bytes there, `\u0001`), plus 64 per message. Default
    /// 256 KiB, which
    /// holds the 1000 messages above when they average under ~190 bytes (typical chat lines
    /// are far shorter) and caps history memory at `max_rooms` x 256 KiB = 250 MiB however
    /// long the messages are.
    pub history_bytes_per_room: usize,
    /// Messages of history in a `joined`. Default 50: about a screenful.
    pub history_on_join: usize,
    /// Most messages one `history` answer holds, whatever `limit` asks. Default 200.
    pub history_page_max: usize,
    /// Most bytes of messages (escaped as sent) in one `history` answer or `joined.history`,
    /// whatever the count: the oldest of the page are left out (`more` is true; the client
    /// pages on with `before`). Default 256 KiB: a quarter of the 1 MiB slow-consumer backlog
    /// (`max_pending_bytes`), so a join over a slow link is never cut for its own answer.
    /// Without it, 50 messages of 4000 control characters made a 1.2 MB `joined`.
    pub history_page_bytes: usize,
    /// Most names in a `users` answer or `joined.users` (`count` always has the total).
    /// Default 1000: a list a UI can show, and joining a 10 000-member room costs the
    /// dispatcher a 1000-name answer rather than a 10 000-name one.
    pub user_list_max: usize,
    /// Rooms with more members than this get no `presence` events. Default 1000: in a room
    /// that big a join or leave would cost a message to everyone, so a crowd connecting would
    /// cost the dispatcher quadratic work, and nobody reads a thousand joins anyway.
    pub presence_max_members: usize,
    /// The room every new connection joins unless its URL names another. Default `lobby`.
    pub default_room: String,
    /// Private rooms: names or `prefix-*` patterns (case-insensitive). Joining one, reading
    /// its history or listing its users needs a JWT whose `rooms` claim matches it, else
    /// `forbidden`; `rooms` lists it only to those. Default empty: every room is open.
    pub private_rooms: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> ChatConfig {
        ChatConfig {
            data_dir: None,
            fsync: Fsync::Batch,
            max_text_chars: 4000,
            max_name_chars: 32,
            max_rooms_per_client: 20,
            max_rooms: 1000,
            rooms_created_per_minute: 10,
            history_per_room: 1000,
            history_bytes_per_room: 256 * 1024,
            history_on_join: 50,
            history_page_max: 200,
            history_page_bytes: 256 * 1024,
            user_list_max: 1000,
            presence_max_members: 1000,
            default_room: "lobby".to_owned(),
            private_rooms: Vec::new(),
        }
    }
}
