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
- fault tolerance: a `tf.train.CheckpointManager` after every epoch (model,
  optimizer, epoch). Every worker must save, as the save may use collectives; the
  chief writes to OUTPUT_DIR/backup, the others to a temporary directory they delete
  again (TF docs). A restarted cluster restores every worker from the chief's backup
  (so the output directory must be on a file system all workers share).
"""

import csv
import math
import os
import shutil
import time

import keras
import tensorflow as tf

from keras_mixer.training import outputs


def fit(net, strategy, train_data, test_data, epochs, steps, global_batch, label_smoothing,
        output_dir, work_dir, chief, verbose):
    """Trains `net` (built and compiled in `strategy.scope()`) for `epochs`.

    Returns (history, scores, epoch_times): per-epoch logs as `History.history`
    does, the final test metrics {"loss", "accuracy", "top5"}, and the wall time
    of each epoch's training (without evaluation) trained in this session.
    """
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)
    top_k = min(5, net.output_shape[-1])
    train_step, eval_step = _steps(net, strategy, loss_fn, global_batch, top_k)
    with strategy.scope():
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        net.optimizer.build(net.trainable_variables)  # its slots exist before a restore
    checkpoint = tf.train.Checkpoint(model=net, optimizer=net.optimizer, epoch=epoch)
    backup = os.path.join(output_dir, "backup")
    latest = tf.train.latest_checkpoint(backup)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"resuming from the backup after epoch {int(epoch.numpy())}")
    start = int(epoch.numpy())
    log = os.path.join(work_dir, outputs.LOG_CSV)
    rows = [r for r in outputs.read_log(log) if r["epoch"] < start]
    best = max((r["val_accuracy"] for r in rows), default=-1.0)
    history, epoch_times = {}, []
    dist_train = strategy.experimental_distribute_dataset(train_data)
    dist_test = strategy.experimental_distribute_dataset(test_data)
    for e in range(start, epochs):
        began = time.perf_counter()
        logs, nan = _train_epoch(train_step, dist_train, steps, chief and verbose != 0, e, epochs)
        epoch_times.append(time.perf_counter() - began)
        val = _evaluate(eval_step, dist_test)
        logs.update({f"val_{k}": v for k, v in val.items()})
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        rows.append(dict(epoch=e, **logs))
        _write_log(log, rows)
        if chief and logs["val_accuracy"] > best:  # the best epoch, as ModelCheckpoint does
            best = logs["val_accuracy"]
            net.save_weights(os.path.join(work_dir, "best.weights.h5"))
        if nan:  # as TerminateOnNaN: every worker saw the same reduced loss
            print(f"epoch {e + 1}: loss is NaN, training stopped")
            break
        epoch.assign(e + 1)
        _save(checkpoint, backup if chief else os.path.join(work_dir, "backup-tmp"), chief)
    scores = _evaluate(eval_step, dist_test)
    if chief:  # as BackupAndRestore at the end of training
        shutil.rmtree(backup, ignore_errors=True)
    return history, scores, epoch_times


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


def _write_log(path, rows):
    # The whole file each epoch (it is small): one row per epoch across resumes.
    keys = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows({**r, "epoch": int(r["epoch"])} for r in rows)
    os.replace(tmp, path)


def _save(checkpoint, directory, chief):
    tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2).save()
    if not chief:
        shutil.rmtree(directory, ignore_errors=True)

