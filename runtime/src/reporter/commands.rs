//! What OAP asks of the agent: the `Commands` every reply carries, handed to whoever listens.
//!
//! OAP answers each call with `Commands`: the reply of `fetchConfigurations` carries the dynamic
//! configuration (`ConfigurationDiscoveryCommand`), and other replies may carry commands too. The
//! worker hands each command, in arrival order, to the handler installed with
//! [`CommandHandler::set`]; with none installed they are dropped, as before. The handler runs on
//! the reporter's thread, outside every lock: it must return quickly (copy what it needs and
//! apply it elsewhere, or apply a setting with an atomic store).

use std::sync::{Arc, Mutex, PoisonError};

use skytrace_proto::v3::{Command, Commands};

type Handler = Arc<dyn Fn(&Command) + Send + Sync>;

/// Where OAP's commands go (cheap to clone: one slot shared by the reporter and its worker).
#[derive(Clone, Default)]
pub(crate) struct CommandHandler {
    slot: Arc<Mutex<Option<Handler>>>,
}

impl std::fmt::Debug for CommandHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandHandler").finish_non_exhaustive()
    }
}

impl CommandHandler {
    /// Sends every later command to `handler` (replacing the one before).
    pub(crate) fn set(&self, handler: impl Fn(&Command) + Send + Sync + 'static) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(handler));
    }
}

impl CommandHandler {
    /// Hands `commands` to the handler, if one is installed.
    pub(crate) fn dispatch(&self, commands: &Commands) {
        if commands.commands.is_empty() {
            return;
        }
        // Cloned out, so that the handler runs without the lock held.
        let handler = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(handler) = handler {
            for command in &commands.commands {
                handler(command);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_reach_the_installed_handler_in_order() {
        let handler = CommandHandler::default();
        let command = |name: &str| Command {
            command: name.into(),
            args: Vec::new(),
        };
        let commands = Commands {
            commands: vec![command("a"), command("b")],
        };
        handler.dispatch(&commands); // nobody listens: dropped
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        handler
            .clone()
            .set(move |c| sink.lock().unwrap().push(c.command.clone()));
        handler.dispatch(&commands);
        assert_eq!(*seen.lock().unwrap(), ["a", "b"]);
    }
}
