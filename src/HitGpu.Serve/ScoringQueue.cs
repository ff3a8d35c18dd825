// Dynamic batching, as Triton's: requests that arrive within a short window are scored in one launch. One
// worker owns the device: it takes the first waiting request, gathers the others that come before the window
// closes (or until the batch is full), scores their songs together with one Predictor call, and hands each
// request its own rows back. A song's probability does not depend on the songs scored beside it (each row's
// sums run alone, in the same order, on the CPU accelerator: ServeTests holds it bit for bit), so a batched
// answer is exactly the answer alone. Explanations take the same worker, one request at a time, so no two
// callers ever use the device at once.
using System.Diagnostics;
using System.Threading.Channels;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Serve;

public sealed class ScoringQueue : IAsyncDisposable
{
    private abstract record Job
    {
        public abstract void Fail(Exception e);
    }

    private sealed record Scoring(float[] Features, TaskCompletionSource<float[]> Done) : Job
    {
        public int Rows => Features.Length / SongData.FeatureCount;
        public override void Fail(Exception e) => Done.TrySetException(e);
    }

    private sealed record Explaining(SongTable Songs, TaskCompletionSource<Attributions> Done) : Job
    {
        public override void Fail(Exception e) => Done.TrySetException(e);
    }

    private readonly Channel<Job> jobs = Channel.CreateUnbounded<Job>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ComputeDevice device;
    private readonly HitModel model;
    private readonly Predictor predictor;
    private readonly TimeSpan window;
    private readonly int maxBatchRows, explainSteps;
    private readonly Task worker;
    private Job? carried; // taken while gathering a batch it cannot join: the next to run

    /// <summary>Scoring launches so far (the warm-up's among them), and the requests they scored: the batching's effect.</summary>
    public long Launches { get; private set; }

    public long ScoredRequests { get; private set; }

    public ScoringQueue(ComputeDevice device, HitModel model, TimeSpan window, int maxBatchRows, int explainSteps)
    {
        (this.device, this.model, this.window, this.maxBatchRows, this.explainSteps) = (device, model, window, maxBatchRows, explainSteps);
        predictor = new Predictor(device, model);
        worker = Task.Factory.StartNew(Work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>P(hit) of each song of <paramref name="features"/> (rows x 15 raw features), scored with whatever else is waiting.</summary>
    public Task<float[]> Score(float[] features)
    {
        var job = new Scoring(features, new TaskCompletionSource<float[]>(TaskCreationOptions.RunContinuationsAsynchronously));
        return jobs.Writer.TryWrite(job) ? job.Done.Task : Task.FromException<float[]>(Stopped());
    }

    /// <summary>Integrated gradients of the songs (as `hitgpu explain`), with their probabilities.</summary>
    public Task<Attributions> Explain(SongTable songs)
    {
        var job = new Explaining(songs, new TaskCompletionSource<Attributions>(TaskCreationOptions.RunContinuationsAsynchronously));
        return jobs.Writer.TryWrite(job) ? job.Done.Task : Task.FromException<Attributions>(Stopped());
    }

    private static InvalidOperationException Stopped() => new("the server is stopping");

    private async Task Work()
    {
        var batch = new List<Scoring>();
        while (true)
        {
            Job? first = carried ?? (await jobs.Reader.WaitToReadAsync() && jobs.Reader.TryRead(out var next) ? next : null);
            carried = null;
            if (first is null)
                break; // completed and drained
            if (first is Explaining explaining)
            {
                Run(explaining, job => job.Done.SetResult(NnExplain(job.Songs)));
                continue;
            }
            batch.Clear();
            batch.Add((Scoring)first);
            await Gather(batch);
            ScoreTogether(batch);
        }
    }

    private Attributions NnExplain(SongTable songs) => HitGpu.Nn.Explain.IntegratedGradients(device, model, songs, explainSteps);

    /// <summary>Adds to the batch what waits, then what comes before the window closes, until it is full.</summary>
    private async Task Gather(List<Scoring> batch)
    {
        int rows = batch[0].Rows;
        var clock = Stopwatch.StartNew();
        while (rows < maxBatchRows)
        {
            if (!jobs.Reader.TryRead(out var job))
            {
                var left = window - clock.Elapsed;
                if (left <= TimeSpan.Zero)
                    return;
                using var timeout = new CancellationTokenSource(left);
                try
                {
                    if (!await jobs.Reader.WaitToReadAsync(timeout.Token))
                        return;
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
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
        float[] features = batch.Count == 1 ? batch[0].Features : [.. batch.SelectMany(job => job.Features)];
        float[] probabilities;
        try
        {
            probabilities = predictor.Predict(new SongTable { Source = "request", Features = features });
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
    public async ValueTask DisposeAsync()
    {
        jobs.Writer.TryComplete();
        await worker;
        predictor.Dispose();
    }
}
