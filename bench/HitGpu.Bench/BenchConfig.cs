// Shared settings: in-process runs (the kernels need no separate build), memory diagnoser, GitHub markdown
// and full JSON reports, and the throughput columns.
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace HitGpu.Bench;

public sealed class BenchConfig : ManualConfig
{
    public BenchConfig()
    {
        AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(2).WithIterationCount(8));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddExporter(MarkdownExporter.GitHub, JsonExporter.Full);
        AddColumn(new ThroughputColumn("GFLOP/s", 1e9, c => c.Descriptor.WorkloadMethod.Name switch
        {
            nameof(KernelBenchmarks.DenseForward) => 2.0 * Dims(c),
            nameof(KernelBenchmarks.DenseBackward) => 4.0 * Dims(c),
            _ => null,
        }));
        AddColumn(new ThroughputColumn("GB/s", 1e9, c => c.Descriptor.WorkloadMethod.Name == nameof(AdamBenchmarks.AdamUpdate)
            ? 28.0 * ThroughputColumn.Param(c, nameof(AdamBenchmarks.Parameters)) // 4 floats read, 3 written
            : null));
        AddColumn(new ThroughputColumn("samples/s", 1, c => c.Descriptor.WorkloadMethod.Name == nameof(TrainingBenchmarks.TrainingStep)
            ? ThroughputColumn.Param(c, nameof(TrainingBenchmarks.Batch))
            : null));
    }

    private static double? Dims(BenchmarkDotNet.Running.BenchmarkCase c)
    {
        var shape = c.Parameters[nameof(KernelBenchmarks.Shape)]?.ToString()?.Split('x');
        return shape is { Length: 3 } ? double.Parse(shape[0]) * double.Parse(shape[1]) * double.Parse(shape[2]) : null;
    }

    /// <summary>Every accelerator kind present and usable here: cpu always, cuda and opencl where found.</summary>
    public static IEnumerable<string> Accelerators() =>
        HitGpu.Kernels.ComputeDevice.List().Where(d => d.Usable).Select(d => d.Kind.ToString().ToLowerInvariant()).Distinct();
}
