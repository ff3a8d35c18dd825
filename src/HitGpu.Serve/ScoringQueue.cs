// Dynamic batching, as Triton's: requests that arrive within a short window are scored in one launch. Each
// scorer owns one device, on a thread of its own: it takes the first waiting request, gathers the others that
// come before the window closes (or until the batch is full), scores their songs together with one Predictor
// call, and hands each request its own rows back. A song's probability does not depend on the songs scored
// beside it (each row's sums run alone, in the same order: the batching tests hold it bit for bit), so a
// batched answer is exactly the answer alone. Explanations take a scorer too, a block of songs at a time,
// and only one explanation runs at once (the explain lane): with two scorers one is always free for scoring,
// with one, scoring runs between an explanation's blocks. An explanation stops between blocks when its
// caller cancels it. No two callers ever use a device at once.
using System.Collections.Concurrent;
using System.Diagnostics;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Serve;

public sealed class ScoringQueue : IAsyncDisposable
{
    private abstract record Job
    {
        public long Queued { get; } = Stopwatch.GetTimestamp(); // for the metrics' queue wait

        public abstract void Fail(Exception e);
    }

    private sealed record Scoring(float[] Inputs, int Rows, TaskCompletionSource<float[]> Done) : Job
    {
        public override void Fail(Exception e) => Done.TrySetException(e);
    }

    private sealed record Explaining(SongTable Songs, float[] Baseline, CancellationToken Cancellation, TaskCompletionSource<Attributions> Done) : Job
    {
        public override void Fail(Exception e) => Done.TrySetException(e);
    }

    /// <summary>One device, its predictor, and the thread that alone calls them.</summary>
    private sealed class Scorer(ComputeDevice device, HitModel model, int index)
    {
        public int Index { get; } = index;
        public ComputeDevice Device { get; } = device;
        public Predictor Predictor { get; } = new(device, model);
        public Thread? Thread { get; set; }
    }

    private readonly BlockingCollection<Job> jobs = [];
    private readonly HitModel model;
    private readonly Scorer[] scorers;
    private readonly TimeSpan window;
    private readonly int maxBatchRows, explainSteps;
    private readonly ServeMetrics? metrics;
    private readonly SemaphoreSlim explainLane; // not disposed: a cancelled block may release it after the queue ends (no handle is held)
    private long launches, scoredRequests, explainedSongs;

    /// <summary>Scoring launches so far, and the requests they scored: the batching's effect.</summary>
    public long Launches => Interlocked.Read(ref launches);

    public long ScoredRequests => Interlocked.Read(ref scoredRequests);

    /// <summary>Songs explained so far (a cancelled explanation counts the blocks it finished).</summary>
    public long ExplainedSongs => Interlocked.Read(ref explainedSongs);

    /// <summary>A scorer on each device (the caller keeps owning them).</summary>
    public ScoringQueue(IReadOnlyList<ComputeDevice> devices, HitModel model, TimeSpan window, int maxBatchRows, int explainSteps,
        ServeMetrics? metrics = null)
    {
        (this.model, this.window, this.maxBatchRows, this.explainSteps, this.metrics) = (model, window, maxBatchRows, explainSteps, metrics);
        scorers = [.. devices.Select((device, index) => new Scorer(device, model, index))];
        explainLane = new SemaphoreSlim(Math.Max(1, scorers.Length - 1));
        foreach (var scorer in scorers)
        {
            // Its own thread, blocked while it waits: the device calls are synchronous, and on a pool thread they
            // would hold one that Kestrel needs (on two cores the pool starts with two, and grows slowly).
            scorer.Thread = new Thread(() => Work(scorer)) { IsBackground = true, Name = "hitgpu scoring" };
            scorer.Thread.Start();
        }
    }

    /// <summary>
    /// Scores and explains one song on every scorer, before any client does, so that the kernels' compilation
    /// is in no one's answer.
    /// </summary>
    public void WarmUp(float[] song)
    {
        foreach (var scorer in scorers)
        {
            scorer.Predictor.Predict(new SongTable { Source = "warm-up", Features = song });
            HitGpu.Nn.Explain.IntegratedGradients(scorer.Device, model, new SongTable { Source = "warm-up", Features = song }, explainSteps);
        }
    }

    /// <summary>P(hit) of each song of <paramref name="features"/> (rows x 15 raw features), scored with whatever else is waiting.</summary>
    public Task<float[]> Score(float[] features)
    {
        // The network inputs are made here, on the caller's thread, so that handlers prepare theirs in parallel
        // while the scorers score: each row's alone, so a batch of them is the inputs of the batch.
        var job = new Scoring(model.Preprocessing.Apply(features), features.Length / SongData.FeatureCount,
            new TaskCompletionSource<float[]>(TaskCreationOptions.RunContinuationsAsynchronously));
        return Add(job) ? job.Done.Task : Task.FromException<float[]>(Stopped());
    }

    /// <summary>
    /// Integrated gradients of the songs (as `hitgpu explain`), with their probabilities: in the explain lane,
    /// a block of songs (<see cref="HitGpu.Nn.Explain.SongsPerBlock"/>) per job, so that scoring jobs queued
    /// meanwhile run between them. Cancelled, it stops before the next block (the one running ends alone).
    /// </summary>
    public async Task<Attributions> Explain(SongTable songs, CancellationToken cancellationToken = default)
    {
        await explainLane.WaitAsync(cancellationToken);
        Task running = Task.CompletedTask; // the block queued last: the lane is free once it has ended too
        try
        {
            int block = HitGpu.Nn.Explain.SongsPerBlock(explainSteps), f = SongData.FeatureCount;
            // The baseline of all the songs, as one call would take it (a model without training medians uses theirs).
            var baseline = model.Preprocessing.Statistics?.Median ?? FeatureStatistics.Of(songs.Features).Median;
            var parts = new List<Attributions>();
            for (int first = 0; first < songs.Count; first += block)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var part = first == 0 && songs.Count <= block ? songs
                    : new SongTable { Source = songs.Source, Features = songs.Features[(first * f)..(Math.Min(songs.Count, first + block) * f)] };
                var job = new Explaining(part, baseline, cancellationToken,
                    new TaskCompletionSource<Attributions>(TaskCreationOptions.RunContinuationsAsynchronously));
                if (!Add(job))
                    throw Stopped();
                running = job.Done.Task;
                parts.Add(await job.Done.Task.WaitAsync(cancellationToken));
            }
            return parts.Count == 1 ? parts[0] : parts[0] with
            {
                Probabilities = [.. parts.SelectMany(part => part.Probabilities)],
                Contributions = [.. parts.SelectMany(part => part.Contributions)],
            };
        }
        finally
        {
            // Cancelled, the caller goes at once, but its block still runs (or is skipped) on a scorer: the next
            // explanation waits for that, so that explanations never hold two scorers.
            if (running.IsCompleted)
                explainLane.Release();
            else
                _ = running.ContinueWith(_ => explainLane.Release(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    /// <summary>A request that came after the stop began (503: another replica can take it).</summary>
    public sealed class StoppingException() : Exception("the server is stopping: send the request again (to another replica)");

    private static StoppingException Stopped() => new();

    private bool Add(Job job)
    {
        try
        {
            return jobs.TryAdd(job);
        }
        catch (InvalidOperationException)
        {
            return false; // completed: stopping
        }
    }

    private void Work(Scorer scorer)
    {
        var batch = new List<Scoring>();
        Job? carried = null; // taken while gathering a batch it cannot join: the next to run
        while (true)
        {
            Job? first = carried;
            carried = null;
            if (first is null && !jobs.TryTake(out first, Timeout.Infinite))
                break; // completed and drained
            if (first is Explaining explaining)
            {
                try
                {
                    explaining.Cancellation.ThrowIfCancellationRequested(); // its caller went while it waited
                    long start = Stopwatch.GetTimestamp();
                    var explained = HitGpu.Nn.Explain.IntegratedGradients(scorer.Device, model, explaining.Songs, explainSteps, explaining.Baseline);
                    metrics?.Explained(scorer.Index, explaining.Songs.Count, explaining.Queued, start, Stopwatch.GetTimestamp());
                    explaining.Done.SetResult(explained);
                    Interlocked.Add(ref explainedSongs, explaining.Songs.Count);
                }
                catch (OperationCanceledException)
                {
                    explaining.Done.TrySetCanceled(explaining.Cancellation);
                }
                catch (Exception e)
                {
                    explaining.Fail(e);
                }
                continue;
            }
            batch.Clear();
            batch.Add((Scoring)first!);
            carried = Gather(batch);
            ScoreTogether(scorer, batch);
        }
    }

    /// <summary>Adds to the batch what waits, then what comes before the window closes, until it is full; returns a job taken that could not join.</summary>
    private Job? Gather(List<Scoring> batch)
    {
        int rows = batch[0].Rows;
        long start = Stopwatch.GetTimestamp();
        while (rows < maxBatchRows)
        {
            var left = window - Stopwatch.GetElapsedTime(start);
            if (!jobs.TryTake(out var job, left > TimeSpan.Zero ? left : TimeSpan.Zero))
                return null;
            if (job is not Scoring scoring || rows + scoring.Rows > maxBatchRows)
                return job;
            batch.Add(scoring);
            rows += scoring.Rows;
        }
        return null;
    }

    private void ScoreTogether(Scorer scorer, List<Scoring> batch)
    {
        float[] probabilities;
        long start = Stopwatch.GetTimestamp();
        try
        {
            probabilities = scorer.Predictor.PredictPrepared(batch.Count == 1 ? batch[0].Inputs : Concat(batch));
        }
        catch (Exception e)
        {
            foreach (var job in batch)
                job.Fail(e);
            return;
        }
        metrics?.Launched(scorer.Index, probabilities.Length, [.. batch.Select(job => job.Queued)], start, Stopwatch.GetTimestamp());
        Interlocked.Increment(ref launches);
        Interlocked.Add(ref scoredRequests, batch.Count);
        int at = 0;
        foreach (var job in batch)
        {
            job.Done.SetResult(batch.Count == 1 ? probabilities : probabilities[at..(at + job.Rows)]);
            at += job.Rows;
        }
    }

    private static float[] Concat(List<Scoring> batch)
    {
        var inputs = new float[batch.Sum(job => job.Inputs.Length)];
        int at = 0;
        foreach (var job in batch)
        {
            job.Inputs.CopyTo(inputs, at);
            at += job.Inputs.Length;
        }
        return inputs;
    }

    /// <summary>Scores what was asked before the call, then stops the scorers and frees their buffers.</summary>
    public ValueTask DisposeAsync()
    {
        jobs.CompleteAdding();
        foreach (var scorer in scorers)
        {
            scorer.Thread!.Join();
            scorer.Predictor.Dispose();
        }
        jobs.Dispose();
        return ValueTask.CompletedTask;
    }
}
