// Memory given back after a burst: one aggressive collection once the requests that brought enough bodies
// have all ended and a quiet second has passed; none while a request runs, none for small bodies.
namespace HitGpu.Serve.Tests;

public sealed class IdleTrimTests
{
    private static async Task<long> TrimsAfterQuiet(IdleTrim trim)
    {
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        return trim.Trims;
    }

    [Fact]
    public async Task A_burst_past_the_threshold_is_trimmed_once_all_its_requests_end()
    {
        using var trim = new IdleTrim(threshold: 1000);
        trim.Begin(600);
        trim.Begin(600);
        trim.End();
        Assert.Equal(0, await TrimsAfterQuiet(trim)); // one still runs
        trim.End();
        Assert.Equal(1, await TrimsAfterQuiet(trim));
        trim.Begin(10);
        trim.End();
        Assert.Equal(1, await TrimsAfterQuiet(trim)); // the count began again: 10 bytes are no burst
    }
}
