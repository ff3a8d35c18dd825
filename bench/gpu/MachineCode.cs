// The machine code a GPU would run, read without a GPU: every kernel of KernelCatalog.ForGpu compiled to PTX
// by ILGPU (as BackendCompileTests does), assembled for Hopper by ptxas (-arch=sm_90), and disassembled by
// cuobjdump. ptxas -v gives registers, spills and static shared memory; the SASS gives the main loop, taken to
// be the innermost loop (a backward branch enclosing no other) with the most FFMA, whose instructions are
// counted by kind. Groups per multiprocessor follow from the registers, the shared memory and the group size
// as Hopper's occupancy rules state them (CUDA C Programming Guide, compute capability 9.0).
// Shared by `HitGpu.Bench machine-code` (bench/gpu/machine-code.sh prints the table) and MachineCodeTests
// (which hold the goals); the tools come from bench/gpu/cuda-tools.sh.
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using HitGpu.Kernels;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace HitGpu.MachineCode;

/// <summary>Instruction counts of one loop body in the SASS.</summary>
public sealed record LoopFigures(int Instructions, int Ffma, int SharedScalar, int Shared128, int GlobalScalar, int Global128)
{
    public double FfmaShare => Instructions == 0 ? 0 : (double)Ffma / Instructions;
}

/// <summary>What ptxas and the SASS say of one kernel, launched with groups of <paramref name="GroupThreads"/> threads.</summary>
public sealed record KernelFigures(string Name, int Registers, int SpillStores, int SpillLoads, int StaticShared, int DynamicShared,
    int GroupThreads, int GroupsPerMultiprocessor, LoopFigures? MainLoop)
{
    /// <summary>Every innermost loop, in address order (a kernel such as the GPU epoch has several hot ones).</summary>
    public IReadOnlyList<LoopFigures> Loops { get; init; } = [];
}

public static partial class MachineCodeReport
{
    /// <summary>The folder holding ptxas and cuobjdump: $HITGPU_CUDA_TOOLS, else ~/.cache/hitgpu/cuda-tools; null when they are not there.</summary>
    public static string? ToolsFolder()
    {
        string dir = Environment.GetEnvironmentVariable("HITGPU_CUDA_TOOLS") is { Length: > 0 } set ? set
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "hitgpu", "cuda-tools");
        return File.Exists(Path.Combine(dir, "ptxas")) && File.Exists(Path.Combine(dir, "cuobjdump")) ? dir : null;
    }

    /// <summary>The kernel's name in the report (the catalog's, as the simulated GPU's trace names it too).</summary>
    public static string NameOf(MethodInfo kernel) => KernelCatalog.NameOf(kernel);

    /// <summary>The PTX ILGPU makes of the kernel for a CUDA GPU, as the compile tests make it, with the launcher's specialization.</summary>
    public static string Ptx(Context context, MethodInfo kernel, KernelSpecialization specialization)
    {
        using var backend = new PTXBackend(context, CudaArchitecture.SM_80, CudaInstructionSet.ISA_70, nvvmAPI: null!);
        return ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel), specialization)).PTXAssembly;
    }

    /// <summary>
    /// How the report launches a kernel: the threads of its groups and the dynamic shared memory each takes (by
    /// which it judges occupancy), as the plan of a Hopper GPU (132 multiprocessors) launches it. The tiled
    /// product by its tile, the metric sums and the GPU epoch (its shared memory at the study network, batch
    /// 32) in one group of the plan's one-group threads, every other kernel in groups of ShapeFor's 256 threads.
    /// </summary>
    public static (int Threads, int DynamicSharedBytes, KernelSpecialization Specialization) LaunchOf(MethodInfo kernel)
    {
        var gpu = DevicePlan.For(AcceleratorKind.Cuda, maxGroupSize: 1024, multiprocessors: 132);
        if (kernel.IsGenericMethod && kernel.GetGenericMethodDefinition() == typeof(DenseTiled).GetMethod(nameof(DenseTiled.ProductKernel)))
        {
            var tile = kernel.GetGenericArguments()[0] == typeof(LargeTile) ? ProductTileSize.Large : ProductTileSize.Small;
            return (DenseTiled.Side(tile) * DenseTiled.Side(tile), DenseTiled.SharedBytes(tile), gpu.ProductSpecialization(tile));
        }
        if (kernel.DeclaringType == typeof(GpuEpoch))
        {
            var study = ParameterLayout.ForClassifier(15, [64, 32]);
            long floats = kernel.Name == nameof(GpuEpoch.TrainKernel) ? GpuEpoch.TrainSharedFloats(study, 32)
                : GpuEpoch.ScoreSharedFloats(study, gpu.GpuEpochScoreRows(study));
            return (gpu.OneGroupThreads, (int)(4 * floats), KernelSpecialization.Empty);
        }
        if (kernel.DeclaringType == typeof(SampleSums))
            return (gpu.OneGroupThreads, 2 * 4 * gpu.OneGroupThreads, KernelSpecialization.Empty);
        return (gpu.ShapeFor(int.MaxValue).GroupSize, 0, KernelSpecialization.Empty);
    }

    /// <summary>
    /// Every GPU kernel's figures, each launched as the device plan of a Hopper GPU launches it; with
    /// <paramref name="keepIn"/>, each kernel's PTX, cubin and SASS are left there (to read a loop), else in a
    /// scratch folder removed after; with <paramref name="only"/>, the kernels whose names contain it.
    /// </summary>
    public static IReadOnlyList<KernelFigures> ReadAll(string tools, string? keepIn = null, string? only = null)
    {
        using var context = Context.Create(builder => builder.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        string scratch = keepIn is null ? Directory.CreateTempSubdirectory("hitgpu-sass-").FullName : Directory.CreateDirectory(keepIn).FullName;
        try
        {
            return KernelCatalog.ForGpu.Where(kernel => only is null || NameOf(kernel).Contains(only, StringComparison.Ordinal)).Select(kernel =>
            {
                var (threads, dynamicShared, specialization) = LaunchOf(kernel);
                return Read(NameOf(kernel), Ptx(context, kernel, specialization), tools, scratch, threads, dynamicShared);
            }).ToArray();
        }
        finally
        {
            if (keepIn is null)
                Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>One kernel's PTX through ptxas and cuobjdump.</summary>
    public static KernelFigures Read(string name, string ptx, string tools, string scratch, int groupThreads, int dynamicShared)
    {
        string stem = Path.Combine(scratch, Regex.Replace(name, "[^A-Za-z0-9._-]", "_"));
        File.WriteAllText(stem + ".ptx", ptx);
        string info = Run(Path.Combine(tools, "ptxas"), $"-arch=sm_90 -v -o \"{stem}.cubin\" \"{stem}.ptx\"");
        string sass = Run(Path.Combine(tools, "cuobjdump"), $"-sass \"{stem}.cubin\"");
        File.WriteAllText(stem + ".sass", sass);
        int registers = Number(info, @"Used (\d+) registers");
        int staticShared = Number(info, @"(\d+) bytes smem");
        return new KernelFigures(name, registers, Number(info, @"(\d+) bytes spill stores"), Number(info, @"(\d+) bytes spill loads"),
            staticShared, dynamicShared, groupThreads, GroupsPerMultiprocessor(registers, groupThreads, staticShared + dynamicShared),
            MainLoop(sass)) { Loops = InnermostLoops(sass).Select(l => l.Figures).ToArray() };
    }

    private static int Number(string text, string pattern)
    {
        var match = Regex.Match(text, pattern);
        return match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }

    private static string Run(string program, string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(program)} {arguments} failed ({process.ExitCode}): {stderr.Result}");
        return stdout + stderr.Result;
    }

    [GeneratedRegex(@"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")]
    private static partial Regex SassLine();

    [GeneratedRegex(@"\bMUFU\.(EX2|LG2|RSQ|SQRT)\b")]
    private static partial Regex SpecialFunction();

    /// <summary>
    /// The main loop of a kernel's SASS: of the loops (a branch to an earlier address, the body from that
    /// address to the branch), those enclosing no other, the one with the most FFMA (then the longest); null
    /// when the kernel has no loop. A loop of exponentials, logarithms or square roots (MUFU.EX2, LG2, RSQ,
    /// SQRT: their expansions carry FFMA) counts only where no loop with FFMA is left: it is a loss's or
    /// Adam's loop, not a product's (the GPU epoch has all three).
    /// </summary>
    public static LoopFigures? MainLoop(string sass) =>
        InnermostLoops(sass).OrderBy(loop => loop.Special || loop.Figures.Ffma == 0).ThenByDescending(loop => loop.Figures.Ffma)
            .ThenByDescending(loop => loop.Figures.Instructions).Select(loop => loop.Figures).FirstOrDefault();

    /// <summary>The loops enclosing no other, in address order, each with whether it evaluates special functions (<see cref="MainLoop"/>).</summary>
    public static IReadOnlyList<(bool Special, LoopFigures Figures)> InnermostLoops(string sass)
    {
        var code = new List<(long Address, string Text)>();
        foreach (Match m in SassLine().Matches(sass))
        {
            string text = m.Groups[2].Value.Trim();
            if (text.Length > 0)
                code.Add((long.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture), text));
        }
        var loops = new List<(long Start, long End)>();
        foreach (var (address, text) in code)
        {
            var target = Regex.Match(text, @"\bBRA\b[^0-9]*0x([0-9a-f]+)");
            if (target.Success && long.Parse(target.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) is var to && to <= address)
                loops.Add((to, address));
        }
        return loops.Where(l => !loops.Any(o => o != l && o.Start >= l.Start && o.End <= l.End)).OrderBy(l => l.Start)
            .Select(l => code.Where(c => c.Address >= l.Start && c.Address <= l.End).Select(c => c.Text).ToArray())
            .Select(body => (body.Any(text => SpecialFunction().IsMatch(text)), Count(body))).ToArray();
    }

    private static LoopFigures Count(IEnumerable<string> instructions)
    {
        int all = 0, ffma = 0, shared = 0, shared128 = 0, global = 0, global128 = 0;
        foreach (string text in instructions)
        {
            // The opcode: after an optional predicate (@P0, @!P1).
            string opcode = text.StartsWith('@') ? text.Split(' ', 3)[1] : text.Split(' ', 2)[0];
            if (opcode == "NOP")
                continue;
            all++;
            string root = opcode.Split('.')[0];
            bool wide = opcode.Contains(".128", StringComparison.Ordinal);
            if (root == "FFMA")
                ffma++;
            else if (root == "LDS")
                _ = wide ? shared128++ : shared++;
            else if (root is "LDG" or "LD")
                _ = wide ? global128++ : global++;
        }
        return new LoopFigures(all, ffma, shared, shared128, global, global128);
    }

    /// <summary>
    /// Resident groups per multiprocessor on Hopper (compute capability 9.0): at most 32 groups and 64 warps;
    /// 65,536 registers, given to each warp in units of 256; 228 KB of shared memory, of which each group also
    /// takes 1 KB for the system.
    /// </summary>
    public static int GroupsPerMultiprocessor(int registers, int threads, int sharedBytes)
    {
        int warps = (threads + 31) / 32;
        int registersPerWarp = (Math.Max(registers, 1) * 32 + 255) / 256 * 256;
        int byWarps = 64 / warps, byRegisters = 65536 / registersPerWarp / warps;
        int byShared = sharedBytes == 0 ? 32 : 228 * 1024 / (sharedBytes + 1024);
        return Math.Min(32, Math.Min(byWarps, Math.Min(byRegisters, byShared)));
    }

    /// <summary>Each kernel's innermost loops with multiply-adds, one line each in address order (machine-code --loops).</summary>
    public static string LoopLines(IEnumerable<KernelFigures> kernels)
    {
        var text = new StringBuilder();
        foreach (var k in kernels)
            foreach (var l in k.Loops.Where(l => l.Ffma > 0))
                text.AppendLine(FormattableString.Invariant(
                    $"{k.Name}: {l.Instructions} instructions, {l.Ffma} FFMA ({100 * l.FfmaShare:F1}%), LDS {l.SharedScalar}/{l.Shared128}, LDG ") +
                        FormattableString.Invariant($"{l.GlobalScalar}/{l.Global128}"));
        return text.ToString();
    }

    /// <summary>The table bench/gpu/machine-code.sh prints (one row per kernel; the main loop's counts last).</summary>
    public static string Table(IEnumerable<KernelFigures> kernels)
    {
        var text = new StringBuilder();
        text.AppendLine("| kernel | regs | spill st/ld B | smem static/dyn B | threads | groups/SM | loop instr | FFMA | FFMA % | LDS scalar/128 " +
            "| LDG scalar/128 |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var k in kernels)
        {
            var l = k.MainLoop;
            string loop = l is null ? "- | - | - | - | -"
                : FormattableString.Invariant($"{l.Instructions} | {l.Ffma} | {100 * l.FfmaShare:F1} | {l.SharedScalar}/{l.Shared128} | ") +
                    FormattableString.Invariant($"{l.GlobalScalar}/{l.Global128}");
            text.AppendLine(FormattableString.Invariant(
                $"| {k.Name} | {k.Registers} | {k.SpillStores}/{k.SpillLoads} | {k.StaticShared}/{k.DynamicShared} | {k.GroupThreads} | ") +
                    FormattableString.Invariant($"{k.GroupsPerMultiprocessor} | {loop} |"));
        }
        return text.ToString();
    }
}
