//! Relay channels: which clients listen on `/` and on each `/relay/NAME`.
//!
//! Members are kept in a vector per channel (fan-out walks it once per message, the hottest
//! loop of the server) and each client remembers its index, so leaving is O(1) with
//! `swap_remove`.

use std::collections::HashMap;
use std::sync::Arc;

use super::ClientId;

/// A client's place in a channel, kept by the client and handed back to [`Channels::leave`].
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    pub(crate) name: Arc<str>,
    slot: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Channels {
    members: HashMap<Arc<str>, Vec<ClientId>>,
}

impl Channels {
    /// Adds `id` to channel `name`.
    pub(crate) fn join(&mut self, name: &str, id: ClientId) -> Membership {
        let name: Arc<str> = match self.members.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => name.into(),
        };
        let members = self.members.entry(name.clone()).or_default();
        members.push(id);
        Membership {
            name,
            slot: members.len() - 1,
        }
    }

    /// Removes the member at `m`; returns the member that moved into its slot, whose
    /// membership must be updated with [`Channels::moved_to`].
    pub(crate) fn leave(&mut self, m: &Membership) -> Option<(ClientId, usize)> {
        let members = self.members.get_mut(&m.name)?;
        members.swap_remove(m.slot);
        let moved = members.get(m.slot).map(|&id| (id, m.slot));
        if members.is_empty() {
            self.members.remove(&m.name);
        }
        moved
    }

    /// Records that the member holding `m` now sits at `slot` (see [`Channels::leave`]).
    pub(crate) fn moved_to(m: &mut Membership, slot: usize) {
        m.slot = slot;
    }

    /// The members of `name` (empty when nobody listens there).
    pub(crate) fn members(&self, name: &str) -> &[ClientId] {
        self.members.get(name).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaves `gone`, updating the moved member's slot as the dispatcher does.
    fn leave(ch: &mut Channels, ms: &mut Vec<(ClientId, Membership)>, gone: ClientId) {
        let pos = ms.iter().position(|(id, _)| *id == gone).unwrap();
        let (_, m) = ms.remove(pos);
        if let Some((moved, slot)) = ch.leave(&m) {
            let (_, mm) = ms.iter_mut().find(|(id, _)| *id == moved).unwrap();
            Channels::moved_to(mm, slot);
        }
    }

    #[test]
    fn join_and_leave_in_any_order_keep_the_member_lists_exact() {
        let mut ch = Channels::default();
        let mut ms: Vec<(ClientId, Membership)> =
            (1..=6).map(|id| (id, ch.join("news", id))).collect();
        let other = ch.join("", 9);
        for gone in [2, 1, 6, 4, 3, 5] {
            leave(&mut ch, &mut ms, gone);
            let mut left = ch.members("news").to_vec();
            left.sort_unstable();
            let mut expected: Vec<ClientId> = ms.iter().map(|(id, _)| *id).collect();
            expected.sort_unstable();
            assert_eq!(left, expected, "after {gone} left");
        }
        assert_eq!(ch.members(""), &[9]);
        assert!(ch.leave(&other).is_none());
        assert!(ch.members.is_empty(), "empty channels are forgotten");
    }
}
