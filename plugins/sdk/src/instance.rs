//! [`PerInstance`]: a value computed once per plugin instance.

use crate::PluginError;

/// A value computed on first use and kept for the rest of the plugin
/// instance, such as settings read from [`config`](crate::config). The host
/// makes one instance per plugin per chat and reuses it for that chat's
/// batches, so the value never crosses chats or sessions, and a config
/// change takes effect from the next chat on.
///
/// On wasm this is a `OnceLock`. Natively each [`testing::Instance`]
/// (`testing::with_config`) gets its own value, so tests that run in
/// parallel with different configs do not see each other's settings.
///
/// ```
/// use wasync_plugin::{PerInstance, PluginError, config};
///
/// struct Settings { max: u32 }
///
/// fn read() -> Result<Settings, PluginError> {
///     Ok(Settings { max: config::parse_or("max", 10)? })
/// }
///
/// static SETTINGS: PerInstance<Result<Settings, PluginError>> = PerInstance::new();
///
/// fn max() -> Result<u32, PluginError> {
///     Ok(SETTINGS.try_get_or_init(read)?.max)
/// }
/// # use wasync_plugin::testing::with_config;
/// # assert_eq!(with_config(&[("max", "3")], max), Ok(3));
/// # assert_eq!(with_config(&[], max), Ok(10));
/// # assert!(with_config(&[("max", "x")], max).is_err());
/// ```
///
/// [`testing::Instance`]: crate::testing
pub struct PerInstance<T: 'static> {
    #[cfg(target_arch = "wasm32")]
    value: std::sync::OnceLock<T>,
    /// Test instance id → its value (leaked: tests only, a few per test).
    #[cfg(not(target_arch = "wasm32"))]
    values: std::sync::Mutex<Vec<(u64, &'static T)>>,
}

impl<T: Send + Sync + 'static> PerInstance<T> {
    /// An empty slot, for a `static`.
    #[allow(clippy::new_without_default)] // a `static` needs a `const fn`
    pub const fn new() -> Self {
        PerInstance {
            #[cfg(target_arch = "wasm32")]
            value: std::sync::OnceLock::new(),
            #[cfg(not(target_arch = "wasm32"))]
            values: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The instance's value, computed by `init` on first use. Pass the same
    /// `init` at every call site (one reader function, typically).
    #[cfg(target_arch = "wasm32")]
    pub fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        self.value.get_or_init(init)
    }

    /// The instance's value, computed by `init` on first use. Pass the same
    /// `init` at every call site (one reader function, typically).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        let id = crate::testing::host::instance_id();
        let found = self.lock().iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
        if let Some(v) = found {
            return v;
        }
        // Computed outside the lock: `init` may read other `PerInstance`s.
        let v: &'static T = Box::leak(Box::new(init()));
        self.lock().push((id, v));
        v
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, &'static T)>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Send + Sync + 'static> PerInstance<Result<T, PluginError>> {
    /// For settings that can be wrong: the instance's value, or a copy of the
    /// error `init` gave. The error is kept too, so every call of the
    /// instance fails the same way (as the host expects of a bad config).
    pub fn try_get_or_init(
        &self,
        init: impl FnOnce() -> Result<T, PluginError>,
    ) -> Result<&T, PluginError> {
        self.get_or_init(init).as_ref().map_err(Clone::clone)
    }
}
