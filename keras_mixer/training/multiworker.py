"""Training under MultiWorkerMirroredStrategy with several workers.

`keras.Model.fit` cannot train there in Keras 3 up to 3.15.1 (keras-team/keras#20585,
checked: fit reduces its first (x, y) batch with `strategy.reduce` on a nested
structure, and its logs with `axis=0`, both of which the collective strategy
rejects; a tf.data input, `steps_per_epoch`, `steps_per_execution=1` or no metrics
do not avoid it). So this is TensorFlow's documented custom training loop
(tutorial "Custom training loop with Keras and MultiWorkerMirroredStrategy") over
the same compiled Keras model, optimizer and loss that `fit` uses elsewhere:

- the global batch is split between the workers by `experimental_distribute_dataset`
  (the pipelines shard by element or by file, see data.py);
- `strategy.run(step)` with a `tf.GradientTape`; each replica's loss is summed and
  divided by the global batch (`tf.nn.compute_average_loss`), and the Keras optimizer
  all-reduces (sums) the gradients, so every worker applies the same update;
- metrics are sums reduced with `strategy.reduce`, so all workers log the same values
  (and all stop together on a NaN loss);
- fault tolerance: after every epoch the log row and best weights, then the
  backup (backup.py, the same format `fit` writes, so a run resumes across the
  single/multi-worker boundary). Every worker saves, as TF's docs prescribe for
  state that may need collectives to read; the chief writes to OUTPUT_DIR/backup,
  the others to a temporary directory they delete again. A restarted cluster
  restores every worker from the chief's backup (so the output directory must be
  on a file system all workers share).
"""

import math
import os
import shutil
import time

import keras
import tensorflow as tf

from keras_mixer.training import backup, outputs


def fit(net, strategy, train_data, test_data, *, steps, epochs, global_batch, label_smoothing,
        backup_dir, work_dir, chief, verbose, restore=True):
    """Trains `net` (built and compiled in `strategy.scope()`) for `epochs`,
    resuming from `backup_dir` unless `restore` is False (--overwrite).

    Returns (history, scores, epoch_times): per-epoch logs as `History.history`
    does, the final test metrics {"loss", "accuracy", "top5"}, and the wall time
    of each epoch's training (without evaluation) trained in this session. The
    backup is left in place: the caller removes it once the outputs exist.
    """
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)
    top_k = min(5, net.output_shape[-1])
    train_step, eval_step = _steps(net, strategy, loss_fn, global_batch, top_k)
    with strategy.scope():
        net.optimizer.build(net.trainable_variables)  # its slots exist before a restore
    log = os.path.join(work_dir, outputs.LOG_CSV)
    start = backup.restore(net, backup_dir, set_aside_unreadable=chief, keep=(log,)) if restore else 0
    epoch_log = outputs.EpochLog(work_dir, save_best=chief)
    epoch_log.start(start)
    history, epoch_times = {}, []
    dist_train = strategy.experimental_distribute_dataset(train_data)
    dist_test = strategy.experimental_distribute_dataset(test_data)
    for e in range(start, epochs):
        began = time.perf_counter()
        logs, nan = _train_epoch(train_step, dist_train, steps, chief and verbose == 1, e, epochs)
        epoch_times.append(time.perf_counter() - began)
        logs.update({f"val_{k}": v for k, v in _evaluate(eval_step, dist_test).items()})
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if chief and verbose == 2:  # as fit's verbose=2: one line per epoch
            print(f"Epoch {e + 1}/{epochs} - {epoch_times[-1]:.0f}s - "
                  + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        epoch_log.end(e, logs, net)  # before the backup: the epoch's row is never lost
        if nan:  # as TerminateOnNaN: every worker saw the same reduced loss
            print(f"epoch {e + 1}: loss is NaN, training stopped")
            break
        _save(net, backup_dir if chief else os.path.join(work_dir, "backup-tmp"), e + 1, chief)
        outputs.discard_previous(work_dir)
    return history, _evaluate(eval_step, dist_test), epoch_times


def _steps(net, strategy, loss_fn, global_batch, top_k):
    def sums(y, y_pred, per_example):
        # Sums over this replica's examples; strategy.reduce adds the replicas.
        true, pred = tf.argmax(y, -1), tf.cast(y_pred, tf.float32)
        return dict(
            loss=tf.reduce_sum(per_example),
            accuracy=tf.reduce_sum(tf.cast(tf.equal(true, tf.argmax(pred, -1)), tf.float32)),
            top5=tf.reduce_sum(tf.cast(tf.math.in_top_k(true, pred, top_k), tf.float32)),
            count=tf.cast(tf.shape(y)[0], tf.float32))

    def replica_train(x, y):
        with tf.GradientTape() as tape:
            y_pred = net(x, training=True)
            per_example = loss_fn(y, y_pred)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if net.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(net.losses))
            scaled = net.optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        grads = tape.gradient(scaled, net.trainable_variables)
        net.optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return sums(y, y_pred, per_example)

    def replica_eval(x, y):
        y_pred = net(x, training=False)
        return sums(y, y_pred, loss_fn(y, y_pred))

    def reduced(fn):
        @tf.function
        def step(batch):
            per_replica = strategy.run(fn, args=batch)
            return {k: strategy.reduce("SUM", v, axis=None) for k, v in per_replica.items()}
        return step

    return reduced(replica_train), reduced(replica_eval)


def _train_epoch(train_step, dist_train, steps, show, e, epochs):
    if show:
        print(f"Epoch {e + 1}/{epochs}")
    bar = keras.utils.Progbar(steps) if show else None
    totals, iterator, nan = {}, iter(dist_train), False
    for i in range(steps):
        out = {k: float(v) for k, v in train_step(next(iterator)).items()}
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + v
        logs = _means(totals)
        nan = math.isnan(out["loss"])
        if bar:
            bar.update(i + 1, list(logs.items()))
        if nan:
            break
    return _means(totals), nan


def _evaluate(eval_step, dist_test):
    totals = {}
    for batch in dist_test:
        for k, v in eval_step(batch).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return _means(totals)


def _means(totals):
    count = totals.get("count", 0.0) or 1.0
    return {k: v / count for k, v in totals.items() if k != "count"}


def _save(net, directory, epoch, chief):
    backup.save(net, directory, epoch)
    if not chief:
        shutil.rmtree(directory, ignore_errors=True)
