// Dynamic batching, as Triton's: requests that arrive within a short window are scored in one launch. One
// worker owns the device: it takes the first waiting request, gathers the others that come before the window
// closes (or until the batch is full), scores their songs together with one Predictor call, and hands each
// request its own rows back. A song's probability does not depend on the songs scored beside it (each row's
// sums run alone, in the same order, on the CPU accelerator: ServeTests holds it bit for bit), so a batched
// answer is exactly the answer alone. Explanations take the same worker, one request at a time, so no two
// callers ever use the device at once.
using System.Collections.Concurrent;
using System.Diagnostics;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Serve;

public sealed class ScoringQueue : IAsyncDisposable
{
    private abstract record Job
    {
        public abstract void Fail(Exception e);
    }

    private sealed record Scoring(float[] Inputs, int Rows, TaskCompletionSource<float[]> Done) : Job
    {
        public override void Fail(Exception e) => Done.TrySetException(e);
    }

    private sealed record Explaining(SongTable Songs, TaskCompletionSource<Attributions> Done) : Job
    {
        public override void Fail(Exception e) => Done.TrySetException(e);
    }

    private readonly BlockingCollection<Job> jobs = [];
    private readonly ComputeDevice device;
    private readonly HitModel model;
    private readonly Predictor predictor;
    private readonly TimeSpan window;
    private readonly int maxBatchRows, explainSteps;
    private readonly Thread worker;
    private Job? carried; // taken while gathering a batch it cannot join: the next to run

    /// <summary>Scoring launches so far (the warm-up's among them), and the requests they scored: the batching's effect.</summary>
    public long Launches { get; private set; }

    public long ScoredRequests { get; private set; }

    public ScoringQueue(ComputeDevice device, HitModel model, TimeSpan window, int maxBatchRows, int explainSteps)
    {
        (this.device, this.model, this.window, this.maxBatchRows, this.explainSteps) = (device, model, window, maxBatchRows, explainSteps);
        predictor = new Predictor(device, model);
        // Its own thread, blocked while it waits: the device calls are synchronous, and on a pool thread they would
        // hold one that Kestrel needs (on two cores the pool starts with two, and grows slowly).
        worker = new Thread(Work) { IsBackground = true, Name = "hitgpu scoring" };
        worker.Start();
    }

    /// <summary>P(hit) of each song of <paramref name="features"/> (rows x 15 raw features), scored with whatever else is waiting.</summary>
    public Task<float[]> Score(float[] features)
    {
        // The network inputs are made here, on the caller's thread, so that handlers prepare theirs in parallel
        // while the worker scores: each row's alone, so a batch of them is the inputs of the batch.
        var job = new Scoring(model.Preprocessing.Apply(features), features.Length / SongData.FeatureCount,
            new TaskCompletionSource<float[]>(TaskCreationOptions.RunContinuationsAsynchronously));
        return Add(job) ? job.Done.Task : Task.FromException<float[]>(Stopped());
    }

    /// <summary>Integrated gradients of the songs (as `hitgpu explain`), with their probabilities.</summary>
    public Task<Attributions> Explain(SongTable songs)
    {
        var job = new Explaining(songs, new TaskCompletionSource<Attributions>(TaskCreationOptions.RunContinuationsAsynchronously));
        return Add(job) ? job.Done.Task : Task.FromException<Attributions>(Stopped());
    }

    private static InvalidOperationException Stopped() => new("the server is stopping");

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

    private void Work()
    {
        var batch = new List<Scoring>();
        while (true)
        {
            Job? first = carried;
            carried = null;
            if (first is null && !jobs.TryTake(out first, Timeout.Infinite))
                break; // completed and drained
            if (first is Explaining explaining)
            {
                Run(explaining, job => job.Done.SetResult(NnExplain(job.Songs)));
                continue;
            }
            batch.Clear();
            batch.Add((Scoring)first!);
            Gather(batch);
            ScoreTogether(batch);
        }
    }

    private Attributions NnExplain(SongTable songs) => HitGpu.Nn.Explain.IntegratedGradients(device, model, songs, explainSteps);

    /// <summary>Adds to the batch what waits, then what comes before the window closes, until it is full.</summary>
    private void Gather(List<Scoring> batch)
    {
        int rows = batch[0].Rows;
        long start = Stopwatch.GetTimestamp();
        while (rows < maxBatchRows)
        {
            var left = window - Stopwatch.GetElapsedTime(start);
            if (!jobs.TryTake(out var job, left > TimeSpan.Zero ? left : TimeSpan.Zero))
                return;
            if (job is not Scoring scoring || rows + scoring.Rows > maxBatchRows)
            {
                carried = job;
                return;
            }
            batch.Add(scoring);
            rows += scoring.Rows;
        }
    }

    private void ScoreTogether(List<Scoring> batch)
    {
        float[] inputs = batch.Count == 1 ? batch[0].Inputs : Concat(batch);
        float[] probabilities;
        try
        {
            probabilities = predictor.PredictPrepared(inputs);
        }
        catch (Exception e)
        {
            foreach (var job in batch)
                job.Fail(e);
            return;
        }
        Launches++;
        ScoredRequests += batch.Count;
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

    private static void Run<T>(T job, Action<T> action) where T : Job
    {
        try
        {
            action(job);
        }
        catch (Exception e)
        {
            job.Fail(e);
        }
    }

    /// <summary>Scores what was asked before the call, then stops the worker and frees the device buffers.</summary>
    public ValueTask DisposeAsync()
    {
        jobs.CompleteAdding();
        worker.Join();
        predictor.Dispose();
        jobs.Dispose();
        return ValueTask.CompletedTask;
    }
}
