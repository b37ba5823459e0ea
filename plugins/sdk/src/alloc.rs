//! [`SmallAlloc`]: a global allocator for plugins that serves small blocks
//! from per-size free lists.
//!
//! A plugin's work per message is mostly small strings and vectors: an
//! edit's body, a tag, an attribute, the canonical ABI's arrays of them,
//! each allocated and then freed by the bindings after the call. WASI's
//! `malloc` (dlmalloc) spends 150–200 WebAssembly instructions on each of
//! those, as much as scanning a short message; a free list takes about
//! twenty. Opt in with
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: wasync_plugin::SmallAlloc = wasync_plugin::SmallAlloc::new();
//! ```
//!
//! Blocks of up to 512 bytes (alignment up to 16) come from six size
//! classes (16, 32, 64, 128, 256 and 512 bytes), carved from 64 KiB chunks
//! the system allocator hands out, and go back to their class's list when
//! freed, never to the system: an instance lives for one chat, so what it
//! keeps is bounded by the most small blocks it held at once. Anything
//! larger, or more aligned, goes to the system allocator as before.
//! WebAssembly plugins are single-threaded; natively (tests) every call
//! goes to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(target_arch = "wasm32")]
use std::cell::UnsafeCell;

/// Size classes: 16 << k bytes for k in 0..CLASSES.
#[cfg(target_arch = "wasm32")]
const CLASSES: usize = 6;
/// The largest block a class serves.
#[cfg(target_arch = "wasm32")]
const MAX_SMALL: usize = 16 << (CLASSES - 1);
/// What a class's list is refilled from.
#[cfg(target_arch = "wasm32")]
const CHUNK: usize = 64 * 1024;

/// The allocator; see the module's documentation.
pub struct SmallAlloc {
    #[cfg(target_arch = "wasm32")]
    state: UnsafeCell<State>,
}

#[cfg(target_arch = "wasm32")]
struct State {
    /// Per class, the first free block (each free block holds the next).
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    bump: *mut u8,
    end: *mut u8,
}

// SAFETY: a WebAssembly plugin has one thread; natively the state is not
// there.
unsafe impl Sync for SmallAlloc {}

impl SmallAlloc {
    /// An allocator with nothing handed out yet.
    #[allow(clippy::new_without_default)] // a `static` needs a `const fn`
    pub const fn new() -> Self {
        SmallAlloc {
            #[cfg(target_arch = "wasm32")]
            state: UnsafeCell::new(State {
                free: [std::ptr::null_mut(); CLASSES],
                bump: std::ptr::null_mut(),
                end: std::ptr::null_mut(),
            }),
        }
    }
}

/// The class of a layout, `None` for the system allocator.
#[cfg(target_arch = "wasm32")]
#[inline]
fn class(l: Layout) -> Option<usize> {
    if l.size() > MAX_SMALL || l.align() > 16 {
        return None;
    }
    let size = l.size().max(16);
    Some((usize::BITS - (size - 1).leading_zeros()) as usize - 4)
}

#[cfg(target_arch = "wasm32")]
unsafe impl GlobalAlloc for SmallAlloc {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let Some(k) = class(l) else {
            return unsafe { System.alloc(l) };
        };
        // SAFETY: one thread, and no call re-enters the allocator.
        let s = unsafe { &mut *self.state.get() };
        let head = s.free[k];
        if !head.is_null() {
            // SAFETY: a free block holds the next free block's address.
            s.free[k] = unsafe { *(head as *mut *mut u8) };
            return head;
        }
        let size = 16 << k;
        if (s.end as usize) - (s.bump as usize) < size {
            // The rest of the chunk (less than one block of this class) is
            // left unused.
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, 16)) };
            if chunk.is_null() {
                return chunk;
            }
            s.bump = chunk;
            // SAFETY: within the chunk just allocated.
            s.end = unsafe { chunk.add(CHUNK) };
        }
        let p = s.bump;
        // SAFETY: `size` bytes are left in the chunk.
        s.bump = unsafe { p.add(size) };
        p
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some(k) = class(l) else {
            return unsafe { System.dealloc(p, l) };
        };
        // SAFETY: one thread; `p` is a block of class `k` no longer used.
        let s = unsafe { &mut *self.state.get() };
        unsafe { *(p as *mut *mut u8) = s.free[k] };
        s.free[k] = p;
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `GlobalAlloc::realloc`'s contract: the caller's.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        match (class(l), class(new)) {
            (Some(a), Some(b)) if a == b => p,
            (None, None) => unsafe { System.realloc(p, l, new_size) },
            _ => {
                let q = unsafe { self.alloc(new) };
                if !q.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                        self.dealloc(p, l);
                    }
                }
                q
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
unsafe impl GlobalAlloc for SmallAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        unsafe { System.realloc(p, l, new_size) }
    }
}
