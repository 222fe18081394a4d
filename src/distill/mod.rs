//! Knowledge distillation into a query-side adapter: a linear map W (d × d, starting at the
//! identity) applied to query embeddings, trained so that the student's softmax over a
//! query's candidate passages matches a teacher's (KL(teacher ‖ student)). Passages are
//! never re-encoded: only queries move.
//!
//! For a query q with candidates p_1..p_m, student scores are s_j = (W q) · p_j / τ_s and
//! teacher scores t_j are turned into a distribution with their own temperature τ_t. With
//! g_j = (softmax(s)_j − softmax(t)_j) / τ_s, the gradient of the KL with respect to W is the
//! outer product (Σ_j g_j p_j) qᵀ.

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// One training example: a query vector, its candidates' vectors and the teacher's scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The query embedding.
    pub query: Vec<f32>,
    /// Candidate passage embeddings (as stored in the index).
    pub candidates: Vec<Vec<f32>>,
    /// The teacher's score of each candidate (higher is more relevant).
    pub teacher: Vec<f32>,
}

/// A linear query adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    dim: usize,
    /// Row-major d × d.
    w: Vec<f32>,
}

fn softmax(x: &[f64]) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

impl Adapter {
    /// The identity map (searching with it changes nothing).
    pub fn identity(dim: usize) -> Self {
        let mut w = vec![0f32; dim * dim];
        for i in 0..dim {
            w[i * dim + i] = 1.0;
        }
        Adapter { dim, w }
    }

    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The weights, row-major.
    pub fn weights(&self) -> &[f32] {
        &self.w
    }

    /// W q.
    pub fn apply(&self, q: &[f32]) -> Vec<f32> {
        self.w
            .chunks_exact(self.dim)
            .map(|row| row.iter().zip(q).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// KL(teacher ‖ student) for one example, and its gradient with respect to W.
    pub fn loss_and_grad(
        &self,
        ex: &Example,
        tau_teacher: f32,
        tau_student: f32,
    ) -> (f64, Vec<f32>) {
        let wq = self.apply(&ex.query);
        let s: Vec<f64> = ex
            .candidates
            .iter()
            .map(|p| {
                p.iter().zip(&wq).map(|(a, b)| (a * b) as f64).sum::<f64>() / tau_student as f64
            })
            .collect();
        let t: Vec<f64> = ex
            .teacher
            .iter()
            .map(|&x| x as f64 / tau_teacher as f64)
            .collect();
        let (ps, pt) = (softmax(&s), softmax(&t));
        let loss: f64 = pt
            .iter()
            .zip(&ps)
            .filter(|(t, _)| **t > 0.0)
            .map(|(t, s)| t * (t.ln() - s.max(1e-300).ln()))
            .sum();
        let mut u = vec![0f64; self.dim];
        for ((p, s), t) in ex.candidates.iter().zip(&ps).zip(&pt) {
            let g = (s - t) / tau_student as f64;
            u.iter_mut().zip(p).for_each(|(a, &x)| *a += g * x as f64);
        }
        let mut grad = vec![0f32; self.dim * self.dim];
        for (a, ua) in u.iter().enumerate() {
            for (b, &qb) in ex.query.iter().enumerate() {
                grad[a * self.dim + b] = (ua * qb as f64) as f32;
            }
        }
        (loss, grad)
    }

    /// Mean KL over `examples`.
    pub fn mean_loss(&self, examples: &[Example], tau_teacher: f32, tau_student: f32) -> f64 {
        let n = examples.len().max(1) as f64;
        examples
            .iter()
            .map(|e| self.loss_and_grad(e, tau_teacher, tau_student).0)
            .sum::<f64>()
            / n
    }
}

/// Training settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Adam step size.
    pub learning_rate: f32,
    /// Passes over the training examples at most.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Teacher softmax temperature.
    pub tau_teacher: f32,
    /// Student softmax temperature.
    pub tau_student: f32,
    /// Share of the examples held out to measure KL and stop early.
    pub holdout: f32,
    /// Stop after this many epochs without a better held-out KL (the best W is kept).
    pub patience: usize,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            learning_rate: 1e-3,
            epochs: 20,
            batch_size: 32,
            tau_teacher: 0.05,
            tau_student: 0.05,
            holdout: 0.1,
            patience: 3,
            seed: 0,
        }
    }
}

/// What training did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// The adapter with the best held-out KL.
    pub adapter: Adapter,
    /// Held-out KL before training (identity W).
    pub initial_holdout_kl: f64,
    /// Held-out KL after each epoch.
    pub holdout_kl: Vec<f64>,
    /// The epoch (1-based) whose W was kept; 0 when no epoch beat the identity.
    pub best_epoch: usize,
}

/// Trains an adapter with Adam on a shuffled split of `examples`.
pub fn train(examples: &[Example], dim: usize, o: &TrainOptions) -> TrainReport {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut rng);
    let n_hold = ((examples.len() as f32 * o.holdout).round() as usize).min(examples.len());
    let hold: Vec<Example> = order[..n_hold]
        .iter()
        .map(|&i| examples[i].clone())
        .collect();
    let mut train_idx: Vec<usize> = order[n_hold..].to_vec();
    let mut adapter = Adapter::identity(dim);
    let initial = adapter.mean_loss(&hold, o.tau_teacher, o.tau_student);
    let (mut best, mut best_kl, mut best_epoch) = (adapter.clone(), initial, 0);
    let (mut m, mut v) = (vec![0f32; dim * dim], vec![0f32; dim * dim]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut step = 0i32;
    let mut curve = Vec::new();
    for epoch in 1..=o.epochs {
        train_idx.shuffle(&mut rng);
        for batch in train_idx.chunks(o.batch_size.max(1)) {
            let mut g = vec![0f32; dim * dim];
            for &i in batch {
                let (_, gi) = adapter.loss_and_grad(&examples[i], o.tau_teacher, o.tau_student);
                g.iter_mut()
                    .zip(gi)
                    .for_each(|(a, b)| *a += b / batch.len() as f32);
            }
            step += 1;
            let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
            for k in 0..g.len() {
                m[k] = b1 * m[k] + (1.0 - b1) * g[k];
                v[k] = b2 * v[k] + (1.0 - b2) * g[k] * g[k];
                adapter.w[k] -= o.learning_rate * (m[k] / c1) / ((v[k] / c2).sqrt() + eps);
            }
        }
        let kl = adapter.mean_loss(&hold, o.tau_teacher, o.tau_student);
        curve.push(kl);
        if kl < best_kl {
            (best, best_kl, best_epoch) = (adapter.clone(), kl, epoch);
        } else if epoch - best_epoch >= o.patience {
            break;
        }
    }
    TrainReport {
        adapter: best,
        initial_holdout_kl: initial,
        holdout_kl: curve,
        best_epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn unit(rng: &mut impl Rng, d: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..d).map(|_| rng.random::<f32>() - 0.5).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d = 6;
        let ex = Example {
            query: unit(&mut rng, d),
            candidates: (0..5).map(|_| unit(&mut rng, d)).collect(),
            teacher: (0..5).map(|_| rng.random::<f32>()).collect(),
        };
        let mut a = Adapter::identity(d);
        a.w.iter_mut()
            .for_each(|w| *w += rng.random::<f32>() * 0.2 - 0.1);
        let (_, grad) = a.loss_and_grad(&ex, 0.2, 0.3);
        let h = 1e-3f32;
        for (k, &gk) in grad.iter().enumerate() {
            let (mut plus, mut minus) = (a.clone(), a.clone());
            plus.w[k] += h;
            minus.w[k] -= h;
            let fd = (plus.loss_and_grad(&ex, 0.2, 0.3).0 - minus.loss_and_grad(&ex, 0.2, 0.3).0)
                / (2.0 * h as f64);
            let g = gk as f64;
            assert!(
                (fd - g).abs() <= 1e-3 * fd.abs().max(1e-2),
                "entry {k}: {g} vs {fd}"
            );
        }
    }

    #[test]
    fn training_lowers_the_held_out_kl() {
        // The teacher scores candidates against a rotated query; the adapter should learn it.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let d = 8;
        let rot = |q: &[f32]| -> Vec<f32> { (0..d).map(|i| q[(i + 1) % d]).collect() };
        let examples: Vec<Example> = (0..400)
            .map(|_| {
                let q = unit(&mut rng, d);
                let cands: Vec<Vec<f32>> = (0..8).map(|_| unit(&mut rng, d)).collect();
                let rq = rot(&q);
                let teacher = cands
                    .iter()
                    .map(|p| p.iter().zip(&rq).map(|(a, b)| a * b).sum())
                    .collect();
                Example {
                    query: q,
                    candidates: cands,
                    teacher,
                }
            })
            .collect();
        let report = train(
            &examples,
            d,
            &TrainOptions {
                learning_rate: 0.02,
                epochs: 30,
                tau_teacher: 0.1,
                tau_student: 0.1,
                holdout: 0.25,
                ..Default::default()
            },
        );
        let last = report.holdout_kl[report.best_epoch - 1];
        assert!(report.best_epoch > 0);
        assert!(
            last < report.initial_holdout_kl * 0.3,
            "held-out KL {} -> {last}",
            report.initial_holdout_kl
        );
    }
}
