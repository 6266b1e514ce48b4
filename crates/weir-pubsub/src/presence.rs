//! Presence in rooms, per user: a user is present from their first connection's join to
//! their last connection's part, however many tabs or devices they use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// What a join or part changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user's first connection joined: announce it.
    Joined,
    /// The user was already present through another connection: nothing to announce.
    AlreadyPresent,
    /// The user's last connection left: announce it.
    Left,
    /// Another connection of the user is still in the room: nothing to announce.
    StillPresent,
    /// The connection was not in the room.
    NotInRoom,
}

/// Who is in which room.
#[derive(Debug, Default)]
pub struct Presence {
    /// room → user → connections of that user in the room.
    rooms: Mutex<HashMap<String, BTreeMap<String, HashSet<u64>>>>,
}

impl Presence {
    /// No one in any room.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connection `connection` of `user` joins `room`. Joining twice is harmless.
    pub fn join(&self, room: &str, user: &str, connection: u64) -> PresenceChange {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let connections = rooms
            .entry(room.to_string())
            .or_default()
            .entry(user.to_string())
            .or_default();
        let first = connections.is_empty();
        connections.insert(connection);
        if first {
            PresenceChange::Joined
        } else {
            PresenceChange::AlreadyPresent
        }
    }

    /// Connection `connection` of `user` leaves `room`.
    pub fn part(&self, room: &str, user: &str, connection: u64) -> PresenceChange {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let Some(users) = rooms.get_mut(room) else {
            return PresenceChange::NotInRoom;
        };
        let Some(connections) = users.get_mut(user) else {
            return PresenceChange::NotInRoom;
        };
        if !connections.remove(&connection) {
            return PresenceChange::NotInRoom;
        }
        if !connections.is_empty() {
            return PresenceChange::StillPresent;
        }
        users.remove(user);
        if users.is_empty() {
            rooms.remove(room);
        }
        PresenceChange::Left
    }

    /// Removes a connection from every room (it disconnected); returns the rooms where its
    /// user is now gone, to announce.
    pub fn disconnect(&self, user: &str, connection: u64) -> Vec<String> {
        let rooms: Vec<String> = {
            let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms
                .iter()
                .filter(|(_, users)| users.get(user).is_some_and(|c| c.contains(&connection)))
                .map(|(room, _)| room.clone())
                .collect()
        };
        rooms
            .into_iter()
            .filter(|room| self.part(room, user, connection) == PresenceChange::Left)
            .collect()
    }

    /// The users present in `room`, sorted.
    pub fn members(&self, room: &str) -> Vec<String> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .get(room)
            .map(|users| users.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_is_per_user_not_per_connection() {
        let presence = Presence::new();
        assert_eq!(presence.join("lobby", "ada", 1), PresenceChange::Joined);
        assert_eq!(
            presence.join("lobby", "ada", 2),
            PresenceChange::AlreadyPresent
        );
        assert_eq!(
            presence.join("lobby", "ada", 2),
            PresenceChange::AlreadyPresent
        );
        assert_eq!(presence.join("lobby", "bob", 3), PresenceChange::Joined);
        assert_eq!(presence.members("lobby"), vec!["ada", "bob"]);
        assert_eq!(
            presence.part("lobby", "ada", 1),
            PresenceChange::StillPresent
        );
        assert_eq!(presence.part("lobby", "ada", 1), PresenceChange::NotInRoom);
        assert_eq!(presence.part("lobby", "ada", 2), PresenceChange::Left);
        assert_eq!(presence.members("lobby"), vec!["bob"]);
        presence.join("kitchen", "bob", 3);
        presence.join("kitchen", "bob", 4);
        assert_eq!(presence.disconnect("bob", 3), vec!["lobby".to_string()]);
        assert_eq!(
            presence.members("kitchen"),
            vec!["bob"],
            "bob's other connection is still there"
        );
        assert!(presence.members("lobby").is_empty());
    }
}
