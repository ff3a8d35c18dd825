// The device plan: every choice that depends on the accelerator or on the shape of the work, made here and
// nowhere else (STYLE.md 16). The training path and the engine that runs it, the dense kernel variant per
// product, the tiled product's tile and what the GPU compiler is told of it, shuffling on the device or the host, where the epoch's metrics are
// summed, launch shapes and the threads of one-group kernels. The environment overrides are read here, once,
// when a device opens: HITGPU_TRAINING_PATH=layered|cpu-epoch|gpu-epoch, HITGPU_DENSE_KERNEL=simple|tiled|lanes, HITGPU_PRODUCT_TILE=small|large,
// HITGPU_SHUFFLE=device|host. Everything else asks the plan (ComputeDevice.Plan) and never re-derives it.
using ILGPU.Runtime;

namespace HitGpu.Kernels;

/// <summary>
/// How a training epoch is run. <see cref="Layered"/>: one launch per layer and pass (10 per step for the
/// study's network, 14 with dropout as the defaults have), many threads each (suits a GPU). <see cref="CpuEpoch"/>: the whole epoch
/// in one launch of one group, through host addresses (the CPU accelerator only, where launches and barriers
/// are dear). <see cref="GpuEpoch"/>: the whole epoch in one launch of one group per network, its parameters and
/// activations in shared memory (a GPU's path for networks that fit; the CPU accelerator runs it too, for its
/// tests). All are held against the same reference (<see cref="NetworkReference"/>).
/// </summary>
public enum TrainingPath { Layered, CpuEpoch, GpuEpoch }

/// <summary>
/// Which dense kernels a launch uses: one output per thread (the CPU accelerator's), shared-memory tiles (a
/// GPU's products), or for batched layers four outputs that share their weights per thread (a GPU's, for the
/// layers its products do not cut: grouped ones).
/// </summary>
public enum DenseVariant { Simple, Tiled, Lanes }

/// <summary>The plan of one accelerator: what it is, and the overrides read from the environment when it opened.</summary>
public sealed record DevicePlan
{
    public AcceleratorKind Kind { get; init; }

    /// <summary>Threads one group may have on this accelerator.</summary>
    public int MaxGroupSize { get; init; }

    public int Multiprocessors { get; init; }

    /// <summary>Memory the accelerator has for HitGpu's buffers: the device's, or on the CPU accelerator what the process may use.</summary>
    public long MemoryBytes { get; init; }

    /// <summary>
    /// Shared memory one group may take: on CUDA the driver's opt-in limit (227 KB on Hopper; the GPU epoch's
    /// launcher asks for it, CudaSharedMemory.cs, since ILGPU 1.5.3 does not), the device's on OpenCL,
    /// unbounded on the CPU accelerator; 48 KB, what any CUDA kernel may take, where nothing is said.
    /// </summary>
    public long SharedBytesPerGroup { get; init; } = 48 * 1024;

    /// <summary>
    /// Null where <paramref name="bytes"/> fit in <see cref="MemoryBytes"/>; else what the estimate and the
    /// accelerator say, "about 3.2 GiB; the cuda accelerator has 2.0 GiB" (MiB below a GiB), for a refusal to finish ("... needs " first).
    /// </summary>
    public string? MemoryShortfall(long bytes) => bytes <= MemoryBytes ? null
        : $"about {Size(bytes)}; the {Kind.ToString().ToLowerInvariant()} accelerator has {Size(MemoryBytes)}";

    private static string Size(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F1} GiB" : $"{Math.Ceiling(bytes / (double)(1L << 20)):F0} MiB";

    /// <summary>Forces the training path (HITGPU_TRAINING_PATH), unless a run asks for one itself.</summary>
    public TrainingPath? PathOverride { get; init; }

    /// <summary>Forces a dense variant for every shape (HITGPU_DENSE_KERNEL; tests and benchmarks set it too).</summary>
    public DenseVariant? DenseOverride { get; init; }

    /// <summary>Forces the tiled product's tile for every shape (HITGPU_PRODUCT_TILE=small|large; tests set it too).</summary>
    public ProductTileSize? TileOverride { get; init; }

    /// <summary>Forces shuffling on the device (true) or the host (false) (HITGPU_SHUFFLE), unless a run asks itself.</summary>
    public bool? ShuffleOverride { get; init; }

    /// <summary>The plan of an accelerator of this kind and size, with the overrides the environment gives.</summary>
    public static DevicePlan For(AcceleratorKind kind, int maxGroupSize, int multiprocessors, long memoryBytes = long.MaxValue,
        long sharedBytesPerGroup = 48 * 1024) => new()
    {
        Kind = kind,
        SharedBytesPerGroup = sharedBytesPerGroup,
        MemoryBytes = MemoryFor(kind, memoryBytes),
        MaxGroupSize = maxGroupSize,
        Multiprocessors = multiprocessors,
        PathOverride = Variable("HITGPU_TRAINING_PATH") switch
        {
            "layered" => TrainingPath.Layered,
            "cpu-epoch" => TrainingPath.CpuEpoch,
            "gpu-epoch" => TrainingPath.GpuEpoch,
            _ => null,
        },
        DenseOverride = Variable("HITGPU_DENSE_KERNEL") switch
        {
            "simple" => DenseVariant.Simple,
            "tiled" => DenseVariant.Tiled,
            "lanes" => DenseVariant.Lanes,
            _ => null,
        },
        TileOverride = Variable("HITGPU_PRODUCT_TILE") switch
        {
            "small" => ProductTileSize.Small,
            "large" => ProductTileSize.Large,
            _ => null,
        },
        ShuffleOverride = Variable("HITGPU_SHUFFLE") switch
        {
            "device" => true,
            "host" => false,
            _ => null,
        },
    };

    /// <summary>
    /// ILGPU's IR optimisation level for an accelerator of this kind, chosen before it opens: its optimisations
    /// pay on a GPU, whose code they shape; on the CPU accelerator the emitted IL is optimised by .NET's JIT
    /// anyway, and O0 compiles the kernels ~0.15 s sooner (measured: first epoch of the default ensemble
    /// 0.43 s against 0.59 s) with the same bits. Auto is a GPU's until it finds none.
    /// </summary>
    public static ILGPU.OptimizationLevel IrOptimizationFor(AcceleratorKind kind) =>
        kind == AcceleratorKind.Cpu ? ILGPU.OptimizationLevel.O0 : ILGPU.OptimizationLevel.O2;

    /// <summary>
    /// The ILGPU backends a kind opens, tried in order, each step with the kind its IR level is chosen for: a
    /// kind's own backend; for Auto the GPUs (CUDA, then OpenCL), then the CPU, opened as the CPU is.
    /// </summary>
    public static IReadOnlyList<(AcceleratorKind Opened, AcceleratorType[] Backends)> OpeningOrder(AcceleratorKind kind) => kind switch
    {
        AcceleratorKind.Auto => [(kind, [AcceleratorType.Cuda, AcceleratorType.OpenCL]), (AcceleratorKind.Cpu, [AcceleratorType.CPU])],
        AcceleratorKind.Cuda => [(kind, [AcceleratorType.Cuda])],
        AcceleratorKind.OpenCL => [(kind, [AcceleratorType.OpenCL])],
        _ => [(kind, [AcceleratorType.CPU])],
    };

    /// <summary>The kind of an ILGPU device.</summary>
    public static AcceleratorKind KindOf(AcceleratorType type) => type switch
    {
        AcceleratorType.Cuda => AcceleratorKind.Cuda,
        AcceleratorType.OpenCL => AcceleratorKind.OpenCL,
        _ => AcceleratorKind.Cpu,
    };

    /// <summary>The GPU kinds, each listed by `hitgpu devices` even where none is found.</summary>
    public static IReadOnlyList<AcceleratorKind> GpuKinds { get; } = [AcceleratorKind.Cuda, AcceleratorKind.OpenCL];

    /// <summary>What opening a kind that found no device says (a GPU kind: the CPU is always there).</summary>
    public static string NoDeviceFound(AcceleratorKind kind) => kind == AcceleratorKind.Cuda
        ? $"no CUDA device found on this machine{(CudaLibraryResolver.DriverLoads() ? "" : " (no CUDA driver library)")}"
        : $"no {kind} device found on this machine";

    /// <summary>What `hitgpu devices` says of a GPU kind it found no device of.</summary>
    public static string NoDeviceNote(AcceleratorKind kind) => kind == AcceleratorKind.Cuda
        ? CudaLibraryResolver.DriverLoads() ? "no: the CUDA driver loads but reports no device"
            : $"no: no CUDA driver library ({string.Join(" or ", CudaLibraryResolver.LinuxNames)} on Linux)"
        : "no: no OpenCL platform with a device ILGPU supports";

    private static string? Variable(string name) => Environment.GetEnvironmentVariable(name)?.ToLowerInvariant();

    private bool OnCpu => Kind == AcceleratorKind.Cpu;

    /// <summary>What the process may use on the CPU accelerator, whose memory is the host's.</summary>
    public static long CpuMemoryBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Memory an accelerator of this kind has for HitGpu: the device's, or on the CPU what the process may use.</summary>
    public static long MemoryFor(AcceleratorKind kind, long deviceBytes) => kind == AcceleratorKind.Cpu ? CpuMemoryBytes : deviceBytes;

    /// <summary>Whether HITGPU_KERNEL_TRACE lists the GPU kernel catalog as this accelerator opens (bench/gpusim's table of launches is a GPU's).</summary>
    public bool TracesGpuCatalog => !OnCpu;

    /// <summary>What `hitgpu devices` says of an accelerator it can open.</summary>
    public string Describe() => OnCpu ? $"simulates one group of {MaxGroupSize} threads on the CPU cores"
        : $"{Multiprocessors} multiprocessors, up to {MaxGroupSize} threads per group";

    /// <summary>
    /// The paths this accelerator can run: the CPU epoch reads host addresses, so only the CPU accelerator has
    /// it; the GPU epoch runs everywhere (on the CPU accelerator for its tests: a barrier there costs microseconds).
    /// </summary>
    public IReadOnlyList<TrainingPath> Paths => OnCpu ? [TrainingPath.Layered, TrainingPath.CpuEpoch, TrainingPath.GpuEpoch]
        : [TrainingPath.Layered, TrainingPath.GpuEpoch];

    /// <summary>
    /// The training path for a network of <paramref name="layout"/> trained in batches of <paramref name="batchRows"/>:
    /// the one asked for, else the override where this accelerator runs it, else the CPU epoch on the CPU
    /// accelerator, and on a GPU the GPU epoch where the network and a batch's activations fit in a group's
    /// shared memory (<see cref="GpuEpochDoesNotFit"/>), layered where they do not or no layout is given. A path
    /// asked for that this accelerator cannot run, or a GPU epoch that does not fit, is refused, saying why (an
    /// override it cannot run is passed over: it is meant for the accelerators and networks that can).
    /// </summary>
    public TrainingPath PathFor(TrainingPath? requested = null, ParameterLayout? layout = null, int batchRows = 0)
    {
        if (requested is { } asked && !Paths.Contains(asked))
            throw new ArgumentException($"the {asked} training path runs on the CPU accelerator only (it reads host addresses); this is {Kind}");
        if (layout is not null && RequestedPathDoesNotFit(requested, layout, batchRows) is { } why)
            throw new ArgumentException($"the GPU epoch cannot train this network: {why}");
        string? doesNotFit = layout is null ? "no network given" : GpuEpochDoesNotFit(layout, batchRows);
        if (requested is { } chosen)
            return chosen;
        if (PathOverride is { } forced && Paths.Contains(forced) && (forced != TrainingPath.GpuEpoch || doesNotFit is null))
            return forced;
        return OnCpu ? TrainingPath.CpuEpoch : doesNotFit is null ? TrainingPath.GpuEpoch : TrainingPath.Layered;
    }

    /// <summary>Why the path asked for cannot train a network of this layout in these batches (null when it can, or none is asked).</summary>
    public string? RequestedPathDoesNotFit(TrainingPath? requested, ParameterLayout layout, int batchRows) =>
        requested == TrainingPath.GpuEpoch ? GpuEpochDoesNotFit(layout, batchRows) : null;

    /// <summary>Whether <see cref="PathFor"/> gives the GPU epoch for this network (refusing as it does).</summary>
    public bool TrainsOnGpuEpoch(TrainingPath? requested, ParameterLayout layout, int batchRows) =>
        PathFor(requested, layout, batchRows) == TrainingPath.GpuEpoch;

    /// <summary>
    /// Why the GPU epoch cannot train a network of <paramref name="layout"/> in batches of <paramref name="batchRows"/>
    /// (null when it can): its parameters and a batch's inputs, outputs and deltas must fit in one group's shared memory.
    /// The reason only: what to shrink is the caller's to say, in its own words (<c>TrainingOptions.SmallerNetwork</c>).
    /// </summary>
    public string? GpuEpochDoesNotFit(ParameterLayout layout, int batchRows)
    {
        int rows = Math.Max(1, batchRows);
        long bytes = 4 * GpuEpoch.TrainSharedFloats(layout, rows);
        return bytes <= SharedBytesPerGroup ? null
            : $"its {layout.Count:N0} parameters and a batch's inputs and activations ({rows} rows x {layout.Members} members x " +
                $"{layout.ActivationWidth}, twice) " +
              $"take {bytes / 1024.0:F1} KB of shared memory, a group has {SharedBytesPerGroup / 1024.0:F1} KB";
    }

    /// <summary>Rows one group of the GPU epoch scores at once: as many of 256 as a group's shared memory holds the inputs and activations of.</summary>
    public int GpuEpochScoreRows(ParameterLayout layout) =>
        (int)Math.Clamp(SharedBytesPerGroup / (4 * GpuEpoch.ScoreSharedFloats(layout, 1)), 1, 256);

    /// <summary>Whether the accelerator's memory is the host's (the CPU accelerator): what the host keeps counts against it too.</summary>
    public bool SharesHostMemory => OnCpu;

    /// <summary>The engine that trains, scores and predicts for <paramref name="network"/> on <paramref name="path"/> (the layered one is the network's
    /// own, made on first use).</summary>
    internal INetworkEngine EngineFor(Network network, Func<LayeredEngine> layered, TrainingPath path) => path switch
    {
        TrainingPath.CpuEpoch => new CpuEpochEngine(network),
        TrainingPath.GpuEpoch => new GpuEpochEngine(network),
        _ => layered(),
    };

    /// <summary>Device memory of a path's own buffers beyond the network's flat ones and the layered passes (the CPU epoch's gradient copies and scratch
    /// rows).</summary>
    internal long EngineBytes(ParameterLayout layout, int batchRows, TrainingPath path) =>
        path == TrainingPath.CpuEpoch ? 4L * (OneGroupThreads * (long)layout.Count
            + CpuEpochEngine.ScratchFloats(layout, CpuEpochEngine.RowsPerThread(batchRows, OneGroupThreads), OneGroupThreads)) : 0;

    /// <summary>
    /// Whether the path's kernels are worth loading on a worker thread while the host reads the data: the CPU
    /// epoch's on the CPU accelerator (ILGPU's one-time start, ~0.2 s, is mostly the JIT compiling ILGPU).
    /// </summary>
    public bool LoadsInBackground(TrainingPath path) => OnCpu && path == TrainingPath.CpuEpoch;

    /// <summary>Whether training shuffles on the device (a permutation kernel an epoch, nothing uploaded): on a GPU, unless asked or overridden.</summary>
    public bool ShufflesOnDevice(bool? requested = null) => requested ?? ShuffleOverride ?? !OnCpu;

    /// <summary>Whether an epoch's metrics are summed on the device (two numbers cross) or read per sample and summed on the host (the CPU accelerator's
    /// memory is the host's).</summary>
    public bool SumsMetricsOnDevice => !OnCpu;

    /// <summary>
    /// Scorers a server runs on this accelerator (each a device and its own thread): two on the CPU accelerator,
    /// so that one launch runs while the other waits for its slower thread (on two cores, 15% more 256-song
    /// requests/s than one scorer, bench/RESULTS.md, "Serving"); one on a GPU.
    /// </summary>
    public int ServingScorers => OnCpu ? 2 : 1;

    /// <summary>
    /// How long a server's scorer waits for more requests to score in one launch, when none is set: 2 ms on a GPU,
    /// where a launch costs far more than scoring a few more songs in it; none on the CPU accelerator, where
    /// requests that wait while a launch runs share the next anyway, and waiting longer only delays them
    /// (bench/RESULTS.md, "Serving": fewer requests/s with 2 ms than 0).
    /// </summary>
    public TimeSpan ServingBatchWindow => OnCpu ? TimeSpan.Zero : TimeSpan.FromMilliseconds(2);

    /// <summary>
    /// The launch shape for <paramref name="elements"/> independent pieces of work. On the CPU one group of
    /// all its threads, blocked; on a GPU groups of 256 threads, strided, enough to cover the work.
    /// </summary>
    public LaunchShape ShapeFor(int elements)
    {
        if (OnCpu)
            return new LaunchShape(1, MaxGroupSize, Blocked: true);
        int groupSize = Math.Min(256, MaxGroupSize);
        int maxGroups = Math.Max(1, Multiprocessors * 8);
        int groups = Math.Clamp((elements + groupSize - 1) / groupSize, 1, maxGroups);
        return new LaunchShape(groups, groupSize, Blocked: false);
    }

    /// <summary>Threads of a kernel that runs in one group (the CPU epoch, the metric sums): every CPU thread, or 256 on a GPU.</summary>
    public int OneGroupThreads => OnCpu ? MaxGroupSize : Math.Min(256, MaxGroupSize);

    /// <summary>
    /// The kernels of one pass of a layer (every layer is BatchedDense's; a plain one is its one member) whose
    /// main product is (rows, outputs) with <paramref name="depth"/> terms a sum: the forward's (rows of a slab,
    /// outputs, inputs), the backward's weight gradient (outputs, inputs, rows of a slab). On a GPU a grouped
    /// layer (embeddings), which the products do not cut, takes the lanes kernels; a dense one the tiled
    /// products once they fill a small tile (64 x 64 outputs) and the sum is long enough for the tile's slices
    /// to pay (<see cref="TiledMinDepth"/>), or the sum is long enough to split (<see cref="SplitsFor"/>: a small
    /// layer's weight gradient over a large batch), else the simple kernels. The CPU accelerator takes the
    /// simple ones. An override holds for every layer, except that a grouped layer has no tiled variant (the
    /// lanes kernels on a GPU, the simple ones on the CPU accelerator).
    /// </summary>
    public DenseVariant LayerVariantFor(int groups, int rows, int outputs, int depth)
    {
        if (DenseOverride is { } forced)
            return forced == DenseVariant.Tiled && groups > 1 ? OnCpu ? DenseVariant.Simple : DenseVariant.Lanes : forced;
        if (OnCpu)
            return DenseVariant.Simple;
        if (groups > 1)
            return DenseVariant.Lanes;
        bool tiles = ((long)rows * outputs >= 64 * 64 && depth >= TiledMinDepth) || SplitsFor(rows * outputs, depth) > 1;
        return tiles ? DenseVariant.Tiled : DenseVariant.Simple;
    }

    /// <summary>
    /// The shortest sum a layer's product is tiled for. Simulated cycles (bench/RESULTS.md, "Simulated GPU"; an
    /// Ampere model, no GPU): the study network's layers at batch 256 (sums of 15 and 64 terms) took 3.8x and 3.1x
    /// fewer cycles in the simple kernel than in the small tile, a 256^3 product 1.5x more; 128 lies between.
    /// </summary>
    public const int TiledMinDepth = 128;

    /// <summary>
    /// Ranges the sum over k is cut into (split-K): a product with few outputs and many terms, such as a small
    /// layer's weight gradient over a large batch, would otherwise leave most of a GPU idle while few threads
    /// walk all the rows. One range per 256 terms beyond the first 512, at most 64.
    /// </summary>
    public static int SplitsFor(int outputs, int depth) =>
        depth >= 512 && outputs < 256 * 256 ? Math.Min(64, (depth + 255) / 256) : 1;

    /// <summary>
    /// The tiled product's tile for (m, n) outputs in <paramref name="slabs"/> slabs: the large one (128 x 128,
    /// 256 threads) once its tiles fill every multiprocessor, else the small one (64 x 64, 64 threads), whose
    /// four times as many tiles keep more of the GPU busy on a mid-sized layer; unless overridden. A tile needs
    /// as many threads in a group as it has (the CPU accelerator's default group is smaller: its tests open
    /// one that is not).
    /// </summary>
    public ProductTileSize TileFor(int m, int n, int slabs)
    {
        int large = DenseTiled.TileOutputs(ProductTileSize.Large);
        long largeTiles = (long)((m + large - 1) / large) * ((n + large - 1) / large) * slabs;
        var tile = TileOverride ?? (MaxGroupSize >= Threads(ProductTileSize.Large) && largeTiles >= Multiprocessors ? ProductTileSize.Large
            : ProductTileSize.Small);
        if (Threads(tile) > MaxGroupSize)
            throw new ArgumentException($"the tiled product's {tile.ToString().ToLowerInvariant()} tile needs groups of {Threads(tile)} threads; " +
                $"this {Kind} accelerator allows {MaxGroupSize}");
        return tile;
    }

    /// <summary>
    /// What a GPU's compiler is told of the tiled product's launches: its group size (which lets ptxas keep the
    /// large tile's kernels at 114-119 registers, no spills: two groups a multiprocessor), and for the small tile
    /// six groups a multiprocessor (168 registers at most). Measured by bench/gpu/machine-code.sh: asking two
    /// large groups of it as well made ptxas cap at 128 and spill. The CPU accelerator takes no such hint.
    /// </summary>
    public ILGPU.Runtime.KernelSpecialization ProductSpecialization(ProductTileSize tile) =>
        OnCpu ? ILGPU.Runtime.KernelSpecialization.Empty : new(Threads(tile), tile == ProductTileSize.Small ? 6 : 1);

    private static int Threads(ProductTileSize tile) => DenseTiled.Side(tile) * DenseTiled.Side(tile);
}
