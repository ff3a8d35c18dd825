// Gives memory back after a burst of large bodies. The GC collects when allocations ask it to: after a burst
// the server allocates next to nothing, so the heap the burst grew (hundreds of MB for eight 15 MB bodies)
// would stay committed until the next burst. Once requests that brought more than a threshold of bodies have
// all ended, and none comes for a quiet second, one aggressive collection compacts the heap and decommits
// what is free (bench/serve/memory.sh: back to 37-43 MB over the start). Never during requests: they would
// wait on it.
namespace HitGpu.Serve;

internal sealed class IdleTrim : IDisposable
{
    private static readonly TimeSpan Quiet = TimeSpan.FromSeconds(1);
    private readonly Timer timer;
    private readonly long threshold;
    private long bytes, trims;
    private int running;

    /// <param name="threshold">Bodies taken since the last trim past which the next quiet second trims: a burst (64 MiB), not small requests.</param>
    public IdleTrim(long threshold = 64L << 20)
    {
        this.threshold = threshold;
        timer = new Timer(_ => Trim());
    }

    /// <summary>Aggressive collections made so far.</summary>
    public long Trims => Interlocked.Read(ref trims);

    /// <summary>A request with a body of <paramref name="bodyBytes"/> begins its work.</summary>
    public void Begin(long bodyBytes)
    {
        Interlocked.Increment(ref running);
        Interlocked.Add(ref bytes, bodyBytes);
    }

    /// <summary>It ended: the last one of a burst arms the quiet second.</summary>
    public void End()
    {
        if (Interlocked.Decrement(ref running) == 0 && Interlocked.Read(ref bytes) >= threshold)
            timer.Change(Quiet, Timeout.InfiniteTimeSpan);
    }

    private void Trim()
    {
        if (Volatile.Read(ref running) != 0)
            return; // a request came in the quiet second: its end arms the timer again
        Interlocked.Exchange(ref bytes, 0);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Interlocked.Increment(ref trims);
    }

    public void Dispose() => timer.Dispose();
}
