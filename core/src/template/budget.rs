//! What rendering may spend: the time, work and output of all templates of one SealedSecret,
//! charged before anything is allocated, and the functions wrapped to charge them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gotmpl::{TemplateError, Value};
use zeroize::Zeroizing;

use super::messages::describe_inner;
use super::{MAX_OUTPUT_BYTES, MAX_VALUE_BYTES, MAX_WORK_BYTES, TIME_LIMIT};

/// What every template of one SealedSecret may still spend: checked before anything is
/// allocated, so no input can make rendering run out of memory or time.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) deadline: Instant,
    work: AtomicUsize,
    pub(super) output: AtomicUsize,
}

impl Budget {
    pub(super) fn new() -> Self {
        Budget {
            deadline: Instant::now() + TIME_LIMIT,
            work: AtomicUsize::new(MAX_WORK_BYTES),
            output: AtomicUsize::new(MAX_OUTPUT_BYTES),
        }
    }

    pub(super) fn take(counter: &AtomicUsize, amount: usize) -> bool {
        counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(amount)).is_ok()
    }

    /// Charge `bytes` of work to function `name`.
    fn charge(&self, name: &str, bytes: usize) -> Result<(), TemplateError> {
        if Instant::now() > self.deadline {
            return Err(limit(name, "rendering took longer than the time limit"));
        }
        if !Self::take(&self.work, bytes) {
            return Err(limit(name, "rendering did more work than allowed"));
        }
        Ok(())
    }
}

/// Marks messages this module wrote, which carry no values and can be shown as they are.
pub(super) const OWN: &str = "sealant: ";

pub(super) fn limit(name: &str, what: &str) -> TemplateError {
    TemplateError::Exec(format!("{OWN}{name}: {what}"))
}

pub(super) fn too_large(name: &str) -> TemplateError {
    limit(name, "the result would exceed 1 MiB")
}

/// The output of one template, within its share of the SealedSecret's output and time.
pub(super) struct BoundedWriter<'a> {
    pub(super) text: Zeroizing<String>,
    pub(super) budget: &'a Budget,
    pub(super) exceeded: Option<&'static str>,
}

impl std::fmt::Write for BoundedWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if Instant::now() > self.budget.deadline {
            self.exceeded = Some("rendering took longer than the time limit");
        } else if self.text.len() + s.len() > MAX_VALUE_BYTES || !Budget::take(&self.budget.output, s.len()) {
            self.exceeded = Some("the rendered Secret would exceed 1 MiB");
        }
        if self.exceeded.is_some() {
            return Err(std::fmt::Error);
        }
        // Grow by hand so that no reallocation leaves a copy of the output behind unwiped.
        if self.text.capacity() < self.text.len() + s.len() {
            let mut bigger = String::with_capacity((self.text.len() + s.len()).max(2 * self.text.capacity()));
            bigger.push_str(&self.text);
            self.text = Zeroizing::new(bigger);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// Bytes a value holds, as far as the budget counts.
pub(super) fn size_of(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::List(items) => items.iter().map(size_of).sum::<usize>() + items.len(),
        Value::Map(map) => map.iter().map(|(k, v)| k.len() + size_of(v)).sum::<usize>() + map.len(),
        _ => 8,
    }
}

/// `f` as template function `name`, charged to `budget`: its arguments are counted before it
/// runs and refused above [`MAX_VALUE_BYTES`], its result after, and the clock checked.
pub(super) fn metered(
    budget: &Arc<Budget>,
    name: &'static str,
    f: impl Fn(&[Value]) -> Result<Value, TemplateError> + Send + Sync + 'static,
) -> impl Fn(&[Value]) -> Result<Value, TemplateError> + Send + Sync + 'static {
    let budget = budget.clone();
    move |args| {
        let input: usize = args.iter().map(size_of).sum();
        if input > MAX_VALUE_BYTES {
            return Err(limit(name, "its arguments exceed 1 MiB"));
        }
        budget.charge(name, input)?;
        let result = f(args).map_err(|e| match &e {
            TemplateError::Exec(m) => match m.strip_prefix(OWN) {
                Some(own) if own.starts_with(name) => e,
                Some(own) => limit(name, own),
                None => limit(name, "failed"),
            },
            other => limit(name, &describe_inner(other)),
        })?;
        let output = size_of(&result);
        if output > MAX_VALUE_BYTES {
            return Err(too_large(name));
        }
        budget.charge(name, output)?;
        Ok(result)
    }
}
