// A BenchmarkDotNet column that turns the mean time of an operation into a rate: GFLOP/s for the dense
// kernels, GB/s for Adam, samples/s for a training step.
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace HitGpu.Bench;

public sealed class ThroughputColumn(string name, double scale, Func<BenchmarkCase, double?> workPerOperation) : IColumn
{
    public string Id => "Throughput." + name;
    public string ColumnName => name;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => $"{name}: work per operation divided by the mean time";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var work = workPerOperation(benchmarkCase);
        var mean = summary[benchmarkCase]?.ResultStatistics?.Mean; // nanoseconds
        if (work is null || mean is null or <= 0)
            return "-";
        return (work.Value / (mean.Value * 1e-9) / scale).ToString("N2", System.Globalization.CultureInfo.InvariantCulture);
    }

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public static int Param(BenchmarkCase benchmarkCase, string name) => Convert.ToInt32(benchmarkCase.Parameters[name]);
}
