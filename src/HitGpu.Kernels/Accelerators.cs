// Opening an accelerator (ILGPU context and device) and the device object every kernel launcher hangs on.
// How each kind wants its work cut up is the plan's (DevicePlan); kernels only see a LaunchShape.
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace HitGpu.Kernels;

/// <summary>Which ILGPU accelerator to run on. <see cref="Auto"/> takes the best one present: CUDA, then OpenCL, then CPU.</summary>
public enum AcceleratorKind { Auto, Cpu, Cuda, OpenCL }

/// <summary>
/// How a kernel is launched: <see cref="Groups"/> groups of <see cref="GroupSize"/> threads.
/// <see cref="Blocked"/> threads each walk one contiguous block of elements (CPU: a cache line stays with
/// one OS thread); otherwise neighbouring threads take neighbouring elements (GPU: coalesced access).
/// </summary>
public readonly record struct LaunchShape(int Groups, int GroupSize, bool Blocked)
{
    public KernelConfig Config => new(Groups, GroupSize);
    public int BlockedFlag => Blocked ? 1 : 0;
}

/// <summary>The elements [Start, End) with stride Step that one kernel thread owns.</summary>
public readonly struct WorkRange
{
    public readonly int Start, End, Step;

    public WorkRange(int start, int end, int step) { Start = start; End = end; Step = step; }

    /// <summary>This thread's share of n elements. Call only inside a kernel.</summary>
    public static WorkRange OfThread(int n, int blocked)
    {
        int thread = Grid.GlobalIndex.X;
        int threads = Grid.Dimension.X * Group.Dimension.X;
        if (blocked == 0)
            return new WorkRange(thread, n, threads);
        int perThread = (n + threads - 1) / threads;
        int start = thread * perThread;
        return new WorkRange(start, Math.Min(n, start + perThread), 1);
    }
}

/// <summary>One accelerator ILGPU found, and whether HitGpu can run on it (and why not).</summary>
public sealed record DeviceInfo(AcceleratorKind Kind, string Name, long MemoryBytes, bool Usable, string Note);

/// <summary>Raised when the requested accelerator does not exist on this machine.</summary>
public sealed class AcceleratorUnavailableException(string message) : Exception(message);

/// <summary>
/// An ILGPU context and one accelerator, with the launch shapes that suit it. Owns both; dispose it last,
/// after every <see cref="DeviceBuffer{T}"/> made on it.
/// </summary>
public sealed partial class ComputeDevice : IDisposable
{
    private readonly Context context;

    public Accelerator Accelerator { get; }
    public AcceleratorKind Kind { get; }
    public string Name => Accelerator.Name;

    /// <summary>Every choice that depends on this accelerator, made once (<see cref="DevicePlan"/>); tests and benchmarks may replace it with a changed
    /// copy of the same kind (host addresses of GPU memory do not exist, so a CPU plan cannot drive a GPU).</summary>
    public DevicePlan Plan
    {
        get => plan;
        set => plan = value.Kind == Kind ? value : throw new ArgumentException($"a {value.Kind} plan for a {Kind} accelerator", nameof(value));
    }

    private DevicePlan plan;

    private ComputeDevice(Context context, Accelerator accelerator, AcceleratorKind kind)
    {
        this.context = context;
        Accelerator = accelerator;
        Kind = kind;
        // On CUDA a kernel may have the driver's opt-in limit of shared memory once it asks (CudaSharedMemory).
        long shared = accelerator is CudaAccelerator cuda ? CudaSharedMemory.OptInBytes(cuda) ?? accelerator.MaxSharedMemoryPerGroup
            : accelerator.MaxSharedMemoryPerGroup;
        plan = DevicePlan.For(kind, accelerator.MaxNumThreadsPerGroup, accelerator.NumMultiprocessors, accelerator.MemorySize, shared);
        if (TracesKernels && plan.TracesGpuCatalog && Interlocked.Exchange(ref catalogTraced, 1) == 0)
            foreach (var kernel in KernelCatalog.ForGpu)
                Console.Error.WriteLine($"[hitgpu] catalog {KernelCatalog.NameOf(kernel)}"); // what a GPU could run: the trace's table lists each
    }

    private static int catalogTraced;

    /// <summary>
    /// Where HITGPU_KERNEL_TRACE=1: a line "[hitgpu] kernel KIND Type.Method&lt;arguments&gt;" on standard error as
    /// each kernel loads, in the order the driver sees its modules (standard output stays the commands' own, a
    /// CSV say); bench/gpusim/run.sh names the simulated GPU's launches by it (ILGPU names a kernel's entry by
    /// its method alone, and many are "Kernel").
    /// </summary>
    private static readonly bool TracesKernels = Environment.GetEnvironmentVariable("HITGPU_KERNEL_TRACE") == "1";

    private TLauncher Loaded<TLauncher>(TLauncher launcher, Delegate kernel) where TLauncher : Delegate
    {
        if (TracesKernels)
        {
            Console.Error.WriteLine($"[hitgpu] kernel {Kind.ToString().ToLowerInvariant()} {KernelCatalog.NameOf(kernel.Method)}");
        }
        return launcher;
    }

    // ILGPU's stream kernels of each arity HitGpu uses, loaded and traced.
    private Action<KernelConfig, T1> LoadKernel<T1>(Action<T1> kernel, KernelSpecialization specialization = default)
        where T1 : struct => Loaded(Accelerator.LoadStreamKernel(kernel, specialization), kernel);

    private Action<KernelConfig, T1, T2> LoadKernel<T1, T2>(Action<T1, T2> kernel)
        where T1 : struct where T2 : struct => Loaded(Accelerator.LoadStreamKernel(kernel), kernel);

    private Action<KernelConfig, T1, T2, T3, T4> LoadKernel<T1, T2, T3, T4>(Action<T1, T2, T3, T4> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct => Loaded(Accelerator.LoadStreamKernel(kernel), kernel);

    private Action<KernelConfig, T1, T2, T3, T4, T5> LoadKernel<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct => Loaded(Accelerator.LoadStreamKernel(kernel), kernel);

    private Action<KernelConfig, T1, T2, T3, T4, T5, T6> LoadKernel<T1, T2, T3, T4, T5, T6>(Action<T1, T2, T3, T4, T5, T6> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct =>
        Loaded(Accelerator.LoadStreamKernel(kernel), kernel);

    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> LoadKernel<T1, T2, T3, T4, T5, T6, T7>(Action<T1, T2, T3, T4, T5, T6, T7> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct =>
        Loaded(Accelerator.LoadStreamKernel(kernel), kernel);

    /// <summary>
    /// The CPU accelerator simulates each GPU thread with an OS thread and a barrier costs microseconds, so
    /// we ask for one group with one thread per core (at least 2, at most 8): each thread then runs long
    /// plain loops over contiguous rows.
    /// </summary>
    public static CPUDevice CpuDevice(int? threads = null)
    {
        int n = threads ?? Math.Clamp(Environment.ProcessorCount, 2, 8);
        return new CPUDevice(numThreadsPerWarp: n, numWarpsPerMultiprocessor: 1, numMultiprocessors: 1);
    }

    /// <summary>Opens the accelerator of the given kind; throws <see cref="AcceleratorUnavailableException"/> when there is none.</summary>
    public static ComputeDevice Open(AcceleratorKind kind = AcceleratorKind.Auto, int? cpuThreads = null)
    {
        CudaLibraryResolver.Register();
        foreach (var (opened, backends) in DevicePlan.OpeningOrder(kind))
        {
            var context = CreateContext(backends, DevicePlan.IrOptimizationFor(opened), cpuThreads);
            try
            {
                if (backends.Select(type => First(context, type)).FirstOrDefault(d => d is not null) is { } device)
                    return new ComputeDevice(context, device.CreateAccelerator(context), DevicePlan.KindOf(device.AcceleratorType));
            }
            catch
            {
                context.Dispose();
                throw;
            }
            context.Dispose();
        }
        throw new AcceleratorUnavailableException($"{DevicePlan.NoDeviceFound(kind)} (try AcceleratorKind.Cpu, or ComputeDevice.List() to list what " +
            "ILGPU sees)");
    }

    // The CPU backend always: ILGPU's context wants one, and Auto ends there.
    private static Context CreateContext(AcceleratorType[] backends, OptimizationLevel level, int? cpuThreads) => Context.Create(builder =>
    {
        // EnableAlgorithms gives the GPU backends their exp, log and sqrt intrinsics.
        builder.Optimize(level).EnableAlgorithms();
        builder.CPU(CpuDevice(cpuThreads));
        if (backends.Contains(AcceleratorType.Cuda))
            builder.Cuda();
        if (backends.Contains(AcceleratorType.OpenCL))
            builder.OpenCL();
    });

    /// <summary>Every accelerator ILGPU finds here, each tried: a device HitGpu cannot open says why.</summary>
    public static IReadOnlyList<DeviceInfo> List()
    {
        CudaLibraryResolver.Register();
        var found = new List<DeviceInfo>();
        using var context = Context.Create(builder => builder.Optimize(OptimizationLevel.O2).EnableAlgorithms().CPU(CpuDevice()).Cuda().OpenCL());
        foreach (var device in context.Devices)
        {
            var kind = DevicePlan.KindOf(device.AcceleratorType);
            long memory = DevicePlan.MemoryFor(kind, device.MemorySize);
            try
            {
                using var accelerator = device.CreateAccelerator(context);
                var plan = DevicePlan.For(kind, accelerator.MaxNumThreadsPerGroup, accelerator.NumMultiprocessors, memory);
                found.Add(new DeviceInfo(kind, device.Name, memory, true, $"yes: {plan.Describe()}"));
            }
            catch (Exception e)
            {
                found.Add(new DeviceInfo(kind, device.Name, memory, false, $"no: {e.Message.Split('\n')[0]}"));
            }
        }
        foreach (var gpu in DevicePlan.GpuKinds.Where(gpu => found.All(d => d.Kind != gpu)))
            found.Add(new DeviceInfo(gpu, "(none)", 0, false, DevicePlan.NoDeviceNote(gpu)));
        return found;
    }

    public static AcceleratorKind ParseKind(string text) => text.ToLowerInvariant() switch
    {
        "auto" => AcceleratorKind.Auto,
        "cpu" => AcceleratorKind.Cpu,
        "cuda" => AcceleratorKind.Cuda,
        "opencl" => AcceleratorKind.OpenCL,
        _ => throw new ArgumentException($"unknown accelerator '{text}' (expected auto, cpu, cuda or opencl)"),
    };

    private static Device? First(Context context, AcceleratorType type) => context.Devices.FirstOrDefault(d => d.AcceleratorType == type);

    public DeviceBuffer<T> Allocate<T>(int rows, int cols = 1) where T : unmanaged => new(this, rows, cols);

    public DeviceBuffer<T> Upload<T>(ReadOnlySpan<T> data, int rows, int cols = 1) where T : unmanaged
    {
        var buffer = new DeviceBuffer<T>(this, rows, cols);
        buffer.CopyFrom(data);
        return buffer;
    }

    public void Synchronize() => Accelerator.Synchronize();

    private static void Require(bool condition, string message)
    {
        if (!condition)
            throw new ArgumentException(message);
    }

    public void Dispose()
    {
        try
        {
            FinishPreparation();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A kernel that failed to load in the background fails again where it is used; disposing goes on.
        }
        ones?.Dispose();
        partials?.Dispose();
        Accelerator.Dispose();
        context.Dispose();
    }
}

/// <summary>
/// ILGPU imports the CUDA driver as "cuda", which Linux resolves to libcuda.so; many machines only have
/// libcuda.so.1 (the development symlink comes with the toolkit). Try both.
/// </summary>
public static class CudaLibraryResolver
{
    private static int registered;

    /// <summary>The file names tried, in order, for ILGPU's "cuda" import on Linux.</summary>
    public static readonly string[] LinuxNames = ["libcuda.so.1", "libcuda.so"];

    public static void Register()
    {
        if (Interlocked.Exchange(ref registered, 1) == 1)
            return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // The host application already installed a resolver for ILGPU: respect it.
        }
    }

    /// <summary>Whether a CUDA driver library can be loaded on this machine.</summary>
    public static bool DriverLoads()
    {
        if (OperatingSystem.IsWindows())
            return NativeLibrary.TryLoad("nvcuda", out _);
        return LinuxNames.Any(name => NativeLibrary.TryLoad(name, out _));
    }

    /// <summary>Returns the handle of the first CUDA driver library that loads, or zero when none does.</summary>
    public static IntPtr Resolve(string libraryName, System.Reflection.Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (libraryName != "cuda" || !OperatingSystem.IsLinux())
            return IntPtr.Zero;
        foreach (var name in LinuxNames)
        {
            if (NativeLibrary.TryLoad(name, out var handle))
                return handle;
        }
        return IntPtr.Zero;
    }
}

/// <summary>
/// Every kernel entry point of the library, found by reflection so that none escapes the tests that compile
/// them for each backend: a public static void method of this assembly whose name ends in "Kernel".
/// </summary>
public static class KernelCatalog
{
    public static IReadOnlyList<System.Reflection.MethodInfo> All { get; } = typeof(KernelCatalog).Assembly.GetTypes()
        .SelectMany(t => t.GetMethods(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static |
            System.Reflection.BindingFlags.DeclaredOnly))
        .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal) && m.ReturnType == typeof(void))
        .SelectMany(Instances)
        .OrderBy(m => m.DeclaringType!.Name + "." + m.Name, StringComparer.Ordinal)
        .ToArray();

    /// <summary>
    /// A kernel, or a generic kernel's instances: each type parameter drawn from the structs that implement its
    /// constraint (a tile, an operand's storage, the kind of load), every combination.
    /// </summary>
    private static IEnumerable<System.Reflection.MethodInfo> Instances(System.Reflection.MethodInfo kernel)
    {
        if (!kernel.IsGenericMethodDefinition)
            return [kernel];
        IEnumerable<Type[]> choices = [[]];
        foreach (var parameter in kernel.GetGenericArguments())
        {
            var constraint = parameter.GetGenericParameterConstraints().Single(c => c.IsInterface);
            var options = typeof(KernelCatalog).Assembly.GetTypes().Where(t => t.IsValueType && constraint.IsAssignableFrom(t))
                .OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
            choices = choices.SelectMany(chosen => options.Select(option => chosen.Append(option).ToArray())).ToArray();
        }
        return choices.Select(kernel.MakeGenericMethod);
    }

    /// <summary>A kernel's name in reports and traces: Type.Method, and a generic kernel's type arguments.</summary>
    public static string NameOf(System.Reflection.MethodInfo kernel) =>
        kernel.DeclaringType!.Name + "." + kernel.Name + (kernel.IsGenericMethod ? "<"
            + string.Join(",", kernel.GetGenericArguments().Select(t => t.Name)) + ">" : "");

    /// <summary>Those a GPU backend can compile: not the CPU epoch's, which read host addresses (<see cref="RowMemory"/>).</summary>
    public static IReadOnlyList<System.Reflection.MethodInfo> ForGpu { get; } = All.Where(m => m.DeclaringType != typeof(CpuEpoch)).ToArray();
}
