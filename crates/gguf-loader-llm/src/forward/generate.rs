//! Generation as an iterator: the prompt run once, then one token sampled
//! and run at a time.

use super::{ForwardError, KvCache, Sampler, Transformer, WeightElement};

/// The tokens a model generates after a prompt, one per `next` (see
/// [`Transformer::generate`]). Ends after `max_new` tokens, after a stop
/// token (which it yields), when the cache is full, or after an error
/// (which it yields). A token is run through the model only when the next
/// one is asked for, so the last one costs no forward pass.
pub struct Generate<'a, T> {
    model: &'a Transformer<T>,
    cache: &'a mut KvCache,
    sampler: Sampler,
    stop: &'a [u32],
    logits: Vec<f32>,
    /// The token yielded last, not yet run.
    pending: Option<u32>,
    left: usize,
    done: bool,
}

impl<T: WeightElement> Transformer<T> {
    /// Runs `prompt` at the next positions of `cache`, then yields the
    /// tokens `sampler` draws, each run in turn, at most `max_new`, ending
    /// after one of `stop` (a tokenizer's `eog_tokens()`, yielded), or when
    /// the cache is full (a cache with room for the prompt and `max_new`
    /// tokens never is). Errs as [`Transformer::forward`] does for the
    /// prompt; an error of a later step is the iterator's last item. An
    /// empty prompt yields nothing.
    ///
    /// ```no_run
    /// # use gguf_loader::{f16, MmapGGUFLoader};
    /// # use gguf_loader_llm::{forward::{Sampler, Transformer}, Tokenizer};
    /// # let loader = MmapGGUFLoader::new("model.gguf")?;
    /// # let tok = Tokenizer::from_loader(&loader)?;
    /// let model = Transformer::<f16>::load(&loader)?;
    /// let prompt = tok.encode("The capital of France is", true, false);
    /// let mut cache = model.new_cache(prompt.len() + 16)?;
    /// let ids = model
    ///     .generate(&mut cache, &prompt, Sampler::greedy(), 16, tok.eog_tokens())?
    ///     .collect::<Result<Vec<u32>, _>>()?;
    /// println!("{}", tok.decode(&ids, false, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn generate<'a>(
        &'a self,
        cache: &'a mut KvCache,
        prompt: &[u32],
        sampler: Sampler,
        max_new: usize,
        stop: &'a [u32],
    ) -> Result<Generate<'a, T>, ForwardError> {
        let logits = if prompt.is_empty() {
            Vec::new()
        } else {
            self.forward(cache, prompt, false)?
        };
        Ok(Generate {
            model: self,
            cache,
            sampler,
            stop,
            logits,
            pending: None,
            left: max_new,
            done: prompt.is_empty(),
        })
    }
}

impl<T: WeightElement> Iterator for Generate<'_, T> {
    type Item = Result<u32, ForwardError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.left == 0 {
            self.done = true;
            return None;
        }
        if let Some(t) = self.pending.take() {
            if self.cache.len() == self.cache.capacity() {
                self.done = true;
                return None;
            }
            match self.model.forward(self.cache, &[t], false) {
                Ok(l) => self.logits = l,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let Some(t) = self.sampler.sample(&self.logits) else {
            self.done = true;
            return None;
        };
        self.left -= 1;
        if self.stop.contains(&t) {
            self.done = true;
        } else {
            self.pending = Some(t);
        }
        Some(Ok(t))
    }
}

impl<T> std::fmt::Debug for Generate<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generate")
            .field("cache", &self.cache)
            .field("left", &self.left)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
