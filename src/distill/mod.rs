//! Knowledge distillation into a query-side adapter: a linear map W (d × d, starting at the
//! identity) applied to query embeddings, trained so that the student's softmax over a
//! query's candidate passages matches a teacher's (KL(teacher ‖ student)). Passages are
//! never re-encoded: only queries move.
//!
//! For a query q with candidates p_1..p_m, student scores are s_j = (W q) · p_j / τ_s and
//! teacher scores t_j are turned into a distribution with their own temperature τ_t. With
//! g_j = (softmax(s)_j − softmax(t)_j) / τ_s, the gradient of the KL with respect to W is the
//! outer product (Σ_j g_j p_j) qᵀ.

mod rerank;
pub mod set;
pub mod teacher;
pub use rerank::Rerank;

pub use set::{
    build_set, examples_from_set, fit, fit_adapters, pseudo_queries, read_queries, read_set,
    split_by_positive, write_set, FitReport, SetOptions, SetQuery, SetReport, SetRow,
};
pub use teacher::{
    Candidate, EncoderTeacher, GeneratorTeacher, Teacher, TeacherQuery, TranslationTeacher,
};

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

fn softmax(x: &[f64]) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

pub(crate) use crate::adapter::dot;
use crate::adapter::matvec;
pub use crate::adapter::{Adapter, AdapterInfo, QueryAdapters, StoredAdapter};

impl Adapter {
    /// KL(teacher ‖ student) for one example, and its gradient with respect to the
    /// parameters (same layout as [`Adapter::weights`]).
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
        // u = dL/d(Wq) = Σ_j g_j p_j.
        let mut u = vec![0f64; self.dim];
        for ((p, s), t) in ex.candidates.iter().zip(&ps).zip(&pt) {
            let g = (s - t) / tau_student as f64;
            u.iter_mut().zip(p).for_each(|(a, &x)| *a += g * x as f64);
        }
        let outer = |left: &[f64], right: &[f32]| -> Vec<f32> {
            let mut g = Vec::with_capacity(left.len() * right.len());
            for &l in left {
                g.extend(right.iter().map(|&r| (l * r as f64) as f32));
            }
            g
        };
        if self.rank == 0 {
            return (loss, outer(&u, &ex.query));
        }
        // W q = q + A (B q): dL/dA = u (Bq)ᵀ, dL/dB = (Aᵀ u) qᵀ.
        let (d, r) = (self.dim, self.rank);
        let (a, b) = self.w.split_at(d * r);
        let bq = matvec(b, d, &ex.query);
        let mut grad = outer(&u, &bq);
        let mut atu = vec![0f64; r];
        for i in 0..d {
            for k in 0..r {
                atu[k] += a[i * r + k] as f64 * u[i];
            }
        }
        grad.extend(outer(&atu, &ex.query));
        (loss, grad)
    }

    /// Adds the gradient of λ/2·‖W − I‖² (full) or λ/2·‖(A, B)‖² (low rank) to `g`.
    fn add_identity_penalty(&self, g: &mut [f32], lambda: f32) {
        let d = self.dim;
        for (k, (gk, &w)) in g.iter_mut().zip(&self.w).enumerate() {
            let target = if self.rank == 0 && k / d == k % d {
                1.0
            } else {
                0.0
            };
            *gk += lambda * (w - target);
        }
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

/// The full adapter minimising Σ‖W qᵢ − tᵢ‖² + λ‖W − I‖² (ridge regression towards the
/// identity): W = I + (T − Q)Qᵀ(QQᵀ + λI)⁻¹ for queries Q and targets T as columns.
/// `None` when the pairs are empty, of the wrong dimension, or λ ≤ 0.
///
/// ```
/// use xqdb::distill::ridge;
/// // Targets are the queries with their axes swapped; with many pairs and a small λ the
/// // fitted map swaps them too.
/// let q: Vec<Vec<f32>> = (0..50).map(|i| vec![(i as f32).cos(), (i as f32).sin()]).collect();
/// let t: Vec<Vec<f32>> = q.iter().map(|v| vec![v[1], v[0]]).collect();
/// let w = ridge(&q, &t, 1e-3).unwrap();
/// let out = w.apply(&[1.0, 0.0]);
/// assert!(out[0].abs() < 1e-3 && (out[1] - 1.0).abs() < 1e-3);
/// ```
pub fn ridge(queries: &[Vec<f32>], targets: &[Vec<f32>], lambda: f32) -> Option<Adapter> {
    let d = queries.first()?.len();
    if d == 0
        || lambda <= 0.0
        || queries.len() != targets.len()
        || queries.iter().chain(targets).any(|v| v.len() != d)
    {
        return None;
    }
    // G = QQᵀ + λI and R = (T − Q)Qᵀ, accumulated in f64.
    let mut g = vec![0f64; d * d];
    let mut r = vec![0f64; d * d];
    for (q, t) in queries.iter().zip(targets) {
        for i in 0..d {
            let (qi, ei) = (q[i] as f64, (t[i] - q[i]) as f64);
            let (grow, rrow) = (&mut g[i * d..(i + 1) * d], &mut r[i * d..(i + 1) * d]);
            for j in 0..d {
                grow[j] += qi * q[j] as f64;
                rrow[j] += ei * q[j] as f64;
            }
        }
    }
    for i in 0..d {
        g[i * d + i] += lambda as f64;
    }
    let l = cholesky(&g, d)?;
    // X G = R with G symmetric: each row x of X solves G x = r (the row of R).
    let mut w = Adapter::identity(d).w;
    for i in 0..d {
        let x = cholesky_solve(&l, d, &r[i * d..(i + 1) * d]);
        w[i * d..(i + 1) * d]
            .iter_mut()
            .zip(x)
            .for_each(|(a, b)| *a += b as f32);
    }
    let a = Adapter { dim: d, rank: 0, w };
    a.check_finite().ok()?;
    Some(a)
}

/// The lower-triangular L with L Lᵀ = `g` (d × d, symmetric positive definite), row-major.
fn cholesky(g: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = g[i * d + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (g[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Solves L Lᵀ x = b.
fn cholesky_solve(l: &[f64], d: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0f64; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * d + i];
    }
    let mut x = vec![0f64; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * d + i];
    }
    x
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
    /// Shuffling seed (also seeds B of a low-rank adapter).
    pub seed: u64,
    /// Train W = I + A·B of this rank instead of a full matrix.
    pub rank: Option<usize>,
    /// Weight λ of the penalty λ/2·‖W − I‖² (full matrix) or λ/2·(‖A‖² + ‖B‖²) (low rank),
    /// which keeps the map near the identity where the examples say little.
    pub identity_penalty: f32,
    /// Train one adapter per query language (queries without a language train none);
    /// otherwise one adapter for all queries.
    pub per_language: bool,
    /// What the adapter is fitted to.
    pub objective: Objective,
    /// Identity-penalty weights λ tried by the embedding objective (each a closed-form fit,
    /// the one with the best validation kept).
    pub ridge_lambdas: Vec<f32>,
}

/// What an adapter is trained to reproduce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Objective {
    /// [`Objective::Embedding`] when every query has a parallel version, the teacher is
    /// the translation teacher and no rank is asked for, else [`Objective::Scores`].
    #[default]
    Auto,
    /// The teacher's distribution over each query's candidates (KL, Adam; any teacher).
    Scores,
    /// The encoder's embedding of the query's parallel version: W minimises
    /// Σ‖W q − t‖² + λ‖W − I‖², solved in closed form (the multilingual
    /// knowledge-distillation objective for sentence encoders, restricted to a linear map).
    Embedding,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            learning_rate: 1e-4,
            epochs: 15,
            batch_size: 32,
            tau_teacher: 0.02,
            tau_student: 0.02,
            holdout: 0.1,
            patience: 3,
            seed: 0,
            rank: None,
            identity_penalty: 0.0,
            per_language: false,
            objective: Objective::Auto,
            ridge_lambdas: vec![0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
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
    /// The validation loss of the identity, when training was validated.
    pub initial_validation: Option<f64>,
    /// The validation loss after each epoch, when training was validated.
    pub validation: Vec<f64>,
    /// For the embedding objective: the λ of the kept fit (its "epochs" are the λs tried,
    /// in [`TrainOptions::ridge_lambdas`] order).
    pub lambda: Option<f32>,
}

/// Trains an adapter with Adam on a shuffled split of `examples` (`options.holdout` of them held
/// out).
///
/// ```
/// use xqdb::distill::{train, Example, TrainOptions};
/// // The teacher prefers the candidate along the second axis; the student starts out
/// // preferring the first.
/// let ex = Example {
///     query: vec![1.0, 0.2],
///     candidates: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
///     teacher: vec![0.0, 1.0],
/// };
/// let report = train(&vec![ex; 40], 2, &TrainOptions {
///     learning_rate: 0.05, tau_teacher: 0.1, tau_student: 0.1, holdout: 0.25,
///     ..Default::default()
/// });
/// let last = report.holdout_kl[report.best_epoch - 1];
/// assert!(last < report.initial_holdout_kl);
/// ```
/// When several examples share a positive passage (one question in many languages,
/// several generated queries of a passage), split with [`train_split`] by passage instead,
/// or the held-out KL rewards memorising passages.
pub fn train(examples: &[Example], dim: usize, options: &TrainOptions) -> TrainReport {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut rng);
    let n_hold = ((examples.len() as f32 * options.holdout).round() as usize).min(examples.len());
    let hold: Vec<Example> = order[..n_hold]
        .iter()
        .map(|&i| examples[i].clone())
        .collect();
    let fit: Vec<Example> = order[n_hold..]
        .iter()
        .map(|&i| examples[i].clone())
        .collect();
    train_split(&fit, &hold, dim, options)
}

/// Trains an adapter with Adam on `examples`, measuring KL on `holdout` after each epoch
/// for early stopping (`options.holdout` is ignored).
pub fn train_split(
    examples: &[Example],
    hold: &[Example],
    dim: usize,
    options: &TrainOptions,
) -> TrainReport {
    train_inner(examples, hold, dim, options, None)
}

/// Like [`train_split`], but the epoch to keep (and when to stop) is chosen by
/// `validate(adapter)`, a loss where lower is better — e.g. 1 − MRR@10 of held-out queries
/// searched over the whole collection. KL over fixed candidate lists cannot see an adapter
/// that pulls queries toward the passages it trained on; a retrieval measure can.
pub fn train_validated(
    examples: &[Example],
    hold: &[Example],
    dim: usize,
    options: &TrainOptions,
    validate: &mut dyn FnMut(&Adapter) -> f64,
) -> TrainReport {
    train_inner(examples, hold, dim, options, Some(validate))
}

fn train_inner(
    examples: &[Example],
    hold: &[Example],
    dim: usize,
    options: &TrainOptions,
    mut validate: Option<&mut dyn FnMut(&Adapter) -> f64>,
) -> TrainReport {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut train_idx: Vec<usize> = (0..examples.len()).collect();
    let mut adapter = match options.rank {
        Some(r) => Adapter::low_rank(dim, r, options.seed),
        None => Adapter::identity(dim),
    };
    let params = adapter.w.len();
    let initial = adapter.mean_loss(hold, options.tau_teacher, options.tau_student);
    let initial_validation = validate.as_mut().map(|f| f(&adapter));
    let mut validation = Vec::new();
    let (mut best, mut best_score, mut best_epoch) =
        (adapter.clone(), initial_validation.unwrap_or(initial), 0);
    let (mut m, mut v) = (vec![0f32; params], vec![0f32; params]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut step = 0i32;
    let mut curve = Vec::new();
    for epoch in 1..=options.epochs {
        train_idx.shuffle(&mut rng);
        for batch in train_idx.chunks(options.batch_size.max(1)) {
            let mut g = vec![0f32; params];
            for &i in batch {
                let (_, gi) =
                    adapter.loss_and_grad(&examples[i], options.tau_teacher, options.tau_student);
                g.iter_mut()
                    .zip(gi)
                    .for_each(|(a, b)| *a += b / batch.len() as f32);
            }
            if options.identity_penalty > 0.0 {
                adapter.add_identity_penalty(&mut g, options.identity_penalty);
            }
            step += 1;
            let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
            for k in 0..g.len() {
                m[k] = b1 * m[k] + (1.0 - b1) * g[k];
                v[k] = b2 * v[k] + (1.0 - b2) * g[k] * g[k];
                adapter.w[k] -= options.learning_rate * (m[k] / c1) / ((v[k] / c2).sqrt() + eps);
            }
        }
        let score = measure(
            &adapter,
            hold,
            options,
            &mut validate,
            &mut curve,
            &mut validation,
        );
        if score < best_score {
            (best, best_score, best_epoch) = (adapter.clone(), score, epoch);
        } else if epoch - best_epoch >= options.patience {
            break;
        }
    }
    TrainReport {
        adapter: best,
        initial_holdout_kl: initial,
        holdout_kl: curve,
        best_epoch,
        initial_validation,
        validation,
        lambda: None,
    }
}

/// Records `a`'s held-out KL in `curve` and its validation loss in `validation` (when
/// validated); returns the score training keeps the lowest of (validation, else KL).
fn measure(
    a: &Adapter,
    hold: &[Example],
    options: &TrainOptions,
    validate: &mut Option<&mut dyn FnMut(&Adapter) -> f64>,
    curve: &mut Vec<f64>,
    validation: &mut Vec<f64>,
) -> f64 {
    let kl = a.mean_loss(hold, options.tau_teacher, options.tau_student);
    curve.push(kl);
    match validate.as_mut() {
        Some(f) => {
            let v = f(a);
            validation.push(v);
            v
        }
        None => kl,
    }
}

/// The embedding objective: a closed-form [`ridge`] fit of W q ≈ t on (`queries`,
/// `targets`) for each λ of `options.ridge_lambdas`; the fit with the lowest `validate` (lower is
/// better; else held-out KL on `hold`) is kept when it beats the identity's. The report's
/// "epochs" are the λs in order.
pub fn train_embedding(
    queries: &[Vec<f32>],
    targets: &[Vec<f32>],
    hold: &[Example],
    dim: usize,
    options: &TrainOptions,
    mut validate: Option<&mut dyn FnMut(&Adapter) -> f64>,
) -> TrainReport {
    let identity = Adapter::identity(dim);
    let initial = identity.mean_loss(hold, options.tau_teacher, options.tau_student);
    let initial_validation = validate.as_mut().map(|f| f(&identity));
    let (mut best, mut best_score, mut best_epoch, mut lambda) =
        (identity, initial_validation.unwrap_or(initial), 0, None);
    let (mut curve, mut validation) = (Vec::new(), Vec::new());
    for (i, &l) in options.ridge_lambdas.iter().enumerate() {
        let Some(a) = ridge(queries, targets, l) else {
            curve.push(f64::INFINITY);
            if validate.is_some() {
                validation.push(f64::INFINITY);
            }
            continue;
        };
        let score = measure(
            &a,
            hold,
            options,
            &mut validate,
            &mut curve,
            &mut validation,
        );
        if score < best_score {
            (best, best_score, best_epoch, lambda) = (a, score, i + 1, Some(l));
        }
    }
    TrainReport {
        adapter: best,
        initial_holdout_kl: initial,
        holdout_kl: curve,
        best_epoch,
        initial_validation,
        validation,
        lambda,
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

    /// A query, five candidates and random teacher scores.
    fn random_example(rng: &mut impl Rng, d: usize) -> Example {
        Example {
            query: unit(rng, d),
            candidates: (0..5).map(|_| unit(rng, d)).collect(),
            teacher: (0..5).map(|_| rng.random::<f32>()).collect(),
        }
    }

    /// Central finite differences of the KL against the analytic gradient, parameter by
    /// parameter.
    fn assert_gradient_matches(a: &Adapter, ex: &Example) {
        let (_, grad) = a.loss_and_grad(ex, 0.2, 0.3);
        assert_eq!(grad.len(), a.w.len());
        let h = 1e-3f32;
        for (k, &gk) in grad.iter().enumerate() {
            let (mut plus, mut minus) = (a.clone(), a.clone());
            plus.w[k] += h;
            minus.w[k] -= h;
            let fd = (plus.loss_and_grad(ex, 0.2, 0.3).0 - minus.loss_and_grad(ex, 0.2, 0.3).0)
                / (2.0 * h as f64);
            assert!(
                (fd - gk as f64).abs() <= 1e-3 * fd.abs().max(1e-2),
                "entry {k}: {gk} vs {fd}"
            );
        }
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d = 6;
        let ex = random_example(&mut rng, d);
        let mut a = Adapter::identity(d);
        a.w.iter_mut()
            .for_each(|w| *w += rng.random::<f32>() * 0.2 - 0.1);
        assert_gradient_matches(&a, &ex);
    }

    #[test]
    fn the_low_rank_gradient_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let d = 6;
        let ex = random_example(&mut rng, d);
        let mut a = Adapter::low_rank(d, 2, 4);
        a.w.iter_mut()
            .for_each(|w| *w += rng.random::<f32>() * 0.4 - 0.2);
        assert_eq!(a.w.len(), 2 * d * 2);
        assert_gradient_matches(&a, &ex);
        // apply() agrees with the expanded matrix.
        let q = unit(&mut rng, d);
        let full = Adapter::from_matrix(d, a.matrix()).unwrap();
        for (x, y) in a.apply(&q).iter().zip(full.apply(&q)) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    fn ridge_recovers_a_linear_map_and_training_keeps_the_identity_unless_beaten() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let d = 6;
        let m: Vec<f32> = (0..d * d).map(|_| rng.random::<f32>() - 0.5).collect();
        let target = Adapter::from_matrix(d, m.clone()).unwrap();
        let q: Vec<Vec<f32>> = (0..200).map(|_| unit(&mut rng, d)).collect();
        let t: Vec<Vec<f32>> = q.iter().map(|v| target.apply(v)).collect();
        let w = ridge(&q, &t, 1e-4).unwrap();
        for (a, b) in w.matrix().iter().zip(&m) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        // A large λ stays near the identity.
        assert!(ridge(&q, &t, 1e6).unwrap().distance_from_identity() < 1e-3);
        assert!(ridge(&q, &t[..3], 1.0).is_none());
        assert!(ridge(&q, &t, 0.0).is_none());
        let o = TrainOptions {
            ridge_lambdas: vec![1e-4, 1.0],
            ..Default::default()
        };
        // Validation that prefers the identity keeps it; one that prefers the map keeps the
        // smallest λ's fit.
        let off_identity = |a: &Adapter| a.distance_from_identity();
        let r = train_embedding(&q, &t, &[], d, &o, Some(&mut |a: &Adapter| off_identity(a)));
        assert_eq!((r.best_epoch, r.lambda), (0, None));
        assert_eq!(r.adapter, Adapter::identity(d));
        let to_target = |a: &Adapter| {
            a.matrix()
                .iter()
                .zip(&m)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum::<f64>()
        };
        let r = train_embedding(&q, &t, &[], d, &o, Some(&mut |a: &Adapter| to_target(a)));
        assert_eq!((r.best_epoch, r.lambda), (1, Some(1e-4)));
        assert_eq!(r.validation.len(), 2);
    }

    #[test]
    fn the_identity_penalty_pulls_training_towards_the_identity() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let d = 6;
        let examples: Vec<Example> = (0..100).map(|_| random_example(&mut rng, d)).collect();
        let run = |penalty: f32| {
            let o = TrainOptions {
                learning_rate: 0.01,
                epochs: 5,
                patience: 10,
                tau_teacher: 0.5,
                tau_student: 0.5,
                identity_penalty: penalty,
                ..Default::default()
            };
            let mut last = Adapter::identity(d);
            let mut keep = |a: &Adapter| {
                last = a.clone();
                0.0
            };
            train_validated(&examples, &examples, d, &o, &mut keep);
            last.distance_from_identity()
        };
        let (free, held) = (run(0.0), run(1.0));
        assert!(held < free * 0.5, "{held} vs {free}");
    }

    #[test]
    fn a_new_low_rank_adapter_is_the_identity() {
        let a = Adapter::low_rank(16, 4, 9);
        assert_eq!(a.distance_from_identity(), 0.0);
        assert_eq!(a.rank(), Some(4));
    }

    #[test]
    fn stored_adapters_round_trip_and_damage_is_reported() {
        let mut a = Adapter::low_rank(8, 3, 1);
        a.w[0] = 0.25;
        let info = AdapterInfo {
            teacher: "translation".into(),
            examples: 12,
            holdout_kl: 0.5,
            ..Default::default()
        };
        let bytes = a.to_bytes(&info);
        let (b, info2) = Adapter::from_bytes(&bytes).unwrap();
        assert_eq!((b, info2), (a.clone(), info.clone()));
        let full = Adapter::identity(5);
        assert_eq!(Adapter::from_bytes(&full.to_bytes(&info)).unwrap().0, full);
        for i in [0, 5, 9, 25, bytes.len() - 12, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Adapter::from_bytes(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(Adapter::from_bytes(&bytes[..bytes.len() - 4]).is_err());
        assert!(Adapter::from_bytes(b"short").is_err());
        assert!(Adapter::from_matrix(3, vec![0.0; 8]).is_err());
        assert!(Adapter::from_matrix(1, vec![f32::NAN]).is_err());
    }

    #[test]
    fn low_rank_training_lowers_the_held_out_kl() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let d = 8;
        // The teacher sees queries moved along one direction: a rank-1 change.
        let dir = unit(&mut rng, d);
        let examples: Vec<Example> = (0..400)
            .map(|_| {
                let q = unit(&mut rng, d);
                let cands: Vec<Vec<f32>> = (0..8).map(|_| unit(&mut rng, d)).collect();
                let along: f32 = q.iter().zip(&dir).map(|(a, b)| a * b).sum();
                let tq: Vec<f32> = q
                    .iter()
                    .zip(&dir)
                    .map(|(a, b)| a + 2.0 * along * b)
                    .collect();
                let teacher = cands
                    .iter()
                    .map(|p| p.iter().zip(&tq).map(|(a, b)| a * b).sum())
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
                epochs: 40,
                tau_teacher: 0.1,
                tau_student: 0.1,
                holdout: 0.25,
                rank: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(report.adapter.rank(), Some(2));
        assert!(report.best_epoch > 0);
        let best = report.holdout_kl[report.best_epoch - 1];
        assert!(
            best < report.initial_holdout_kl * 0.5,
            "held-out KL {} -> {best}",
            report.initial_holdout_kl
        );
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
