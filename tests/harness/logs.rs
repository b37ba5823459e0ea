//! Capturing what the host logs, to check what it never says (a proxy's
//! password, say).
//!
//! The tests' one global subscriber (installed by [`crate::init_logs`])
//! carries a second layer beside the printed one: while a [`LogCapture`]
//! is alive it records every event at `DEBUG` and above, with the fields of
//! the spans it happened in, whatever `RUST_LOG` prints. Hosts run in the
//! test process on any runtime thread, so a per-thread subscriber would
//! miss them; a global capture also sees other tests' lines, which is
//! harmless for a search for a secret only one test knows.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static SINKS: Mutex<Vec<Weak<Mutex<String>>>> = Mutex::new(Vec::new());

/// Records the process's log lines from [`LogCapture::start`] until dropped.
#[derive(Debug)]
pub struct LogCapture {
    buf: Arc<Mutex<String>>,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        crate::init_logs();
        let buf = Arc::new(Mutex::new(String::new()));
        SINKS.lock().unwrap().push(Arc::downgrade(&buf));
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        tracing::callsite::rebuild_interest_cache();
        LogCapture { buf }
    }

    /// Everything recorded so far, one event a line.
    pub fn text(&self) -> String {
        self.buf.lock().unwrap().clone()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
        SINKS.lock().unwrap().retain(|w| w.strong_count() > 0);
    }
}

/// On while a capture is alive; `DEBUG` and above.
pub(crate) struct WhileCapturing;

impl<S> Filter<S> for WhileCapturing {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        ACTIVE.load(Ordering::Relaxed) > 0 && *meta.level() <= Level::DEBUG
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if *meta.level() <= Level::DEBUG {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }
}

/// Writes events (and their spans' fields) into the live captures.
pub(crate) struct CaptureLayer;

struct Fields(String);

struct Visitor<'a>(&'a mut String);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CaptureLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut s = String::new();
        attrs.record(&mut Visitor(&mut s));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Fields(s));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(f) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut Visitor(&mut f.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = format!("{} {}", meta.level(), meta.target());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let _ = write!(line, " {}{{", span.name());
                if let Some(f) = span.extensions().get::<Fields>() {
                    line.push_str(&f.0);
                }
                line.push('}');
            }
        }
        event.record(&mut Visitor(&mut line));
        line.push('\n');
        for sink in SINKS.lock().unwrap().iter().filter_map(Weak::upgrade) {
            sink.lock().unwrap().push_str(&line);
        }
    }
}
