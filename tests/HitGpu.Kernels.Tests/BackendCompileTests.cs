// Every kernel must compile for the GPU backends, which CI can do without a GPU: ILGPU generates PTX and
// OpenCL C on any machine. A kernel that uses something a GPU backend rejects (doubles on OpenCL without
// the extension, a managed call, an unsupported intrinsic) fails here, not on the GPU machine.
using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using HitGpu.MachineCode;

namespace HitGpu.Kernels.Tests;

// In the accelerator collection, so it never compiles while a CPU kernel runs: once, with the two in parallel,
// a CPU launch left its output unwritten (a flaky DenseTests failure); apart, many runs have passed.
[Collection(AcceleratorCollection.Name)]
public sealed class BackendCompileTests
{
    public static TheoryData<string> Kernels()
    {
        var data = new TheoryData<string>();
        foreach (var method in KernelCatalog.ForGpu)
            data.Add(MachineCodeReport.NameOf(method));
        return data;
    }

    private static MethodInfo Find(string name) => KernelCatalog.ForGpu.Single(m => MachineCodeReport.NameOf(m) == name);

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Compiles_to_PTX(string kernel)
    {
        using var context = Context.Create(builder => builder.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        using var backend = new PTXBackend(context, CudaArchitecture.SM_80, CudaInstructionSet.ISA_70, nvvmAPI: null!);
        var compiled = (PTXCompiledKernel)backend.Compile(
            EntryPointDescription.FromExplicitlyGroupedKernel(Find(kernel)), KernelSpecialization.Empty);
        Assert.Contains(".entry", compiled.PTXAssembly);
        Assert.Contains(".target sm_80", compiled.PTXAssembly);
        Assert.DoesNotContain(".f64", compiled.PTXAssembly); // float32 throughout: doubles are slow on most GPUs
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Compiles_to_OpenCL_C_without_extensions(string kernel)
    {
        using var context = Context.Create(builder => builder.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        // No optional capability at all (no fp16, fp64, int64 atomics, sub-groups, generic address space).
        var constructor = typeof(CLCapabilityContext).GetConstructors().Single(c => c.GetParameters().All(p => p.ParameterType == typeof(bool)));
        var capabilities = (CLCapabilityContext)constructor.Invoke(constructor.GetParameters().Select(_ => (object)false).ToArray());
        using var backend = new CLBackend(context, capabilities, CLDeviceVendor.Other, CLCVersion.CL20);
        var compiled = (CLCompiledKernel)backend.Compile(
            EntryPointDescription.FromExplicitlyGroupedKernel(Find(kernel)), KernelSpecialization.Empty);
        Assert.Contains("kernel", compiled.Source);
        Assert.DoesNotContain("double", compiled.Source);
    }

    [Fact]
    public void The_catalog_finds_every_kernel_and_keeps_the_CPU_only_ones_from_the_GPUs()
    {
        // Found by reflection: a kernel added under the naming rule is compiled by the tests above without
        // anyone editing a list. The CPU epoch's kernels take host addresses and can only run on the CPU.
        var all = KernelCatalog.All.Select(MachineCodeReport.NameOf).ToArray();
        var gpu = KernelCatalog.ForGpu.Select(MachineCodeReport.NameOf).ToArray();
        Assert.Contains("BatchedDense.SimpleForwardKernel", gpu);
        Assert.Contains("CpuEpoch.TrainKernel", all);
        // The tiled product's instances: 2 tiles x 2 storages of A x 2 of B x 2 kinds of load.
        Assert.Equal(16, gpu.Count(name => name.StartsWith("DenseTiled.ProductKernel<", StringComparison.Ordinal)));
        Assert.Equal(["CpuEpoch.PredictKernel", "CpuEpoch.ScoreKernel", "CpuEpoch.TrainKernel"], all.Except(gpu).Order(StringComparer.Ordinal));
        Assert.All(KernelCatalog.All, m => Assert.True(m.IsStatic && m.ReturnType == typeof(void), m.Name));
    }

    [Theory]
    [InlineData(ProductTileSize.Large)]
    [InlineData(ProductTileSize.Small)]
    public void The_tiled_product_reads_shared_memory_in_16_bytes_and_keeps_its_sums_in_registers(ProductTileSize tile)
    {
        // What ILGPU emits, checked without a GPU (ptxas's view is MachineCodeTests'): the slices go through
        // shared memory in 16-byte loads, global loads are 16 bytes wide on the vector path, the group size is
        // declared, and nothing is in local memory (an accumulator array or a register spill would be .local).
        using var context = Context.Create(builder => builder.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        var kernel = DenseTiled.ProductKernelFor(tile, aKAlongRows: true, bKAlongRows: true, vector: true);
        var ptx = MachineCodeReport.Ptx(context, kernel, MachineCodeReport.LaunchOf(kernel).Specialization);
        Assert.Contains("bar.sync", ptx);
        Assert.Contains("ld.shared.v4.f32", ptx);
        Assert.Contains("ld.global.v4.f32", ptx);
        Assert.Contains($".maxntid {DenseTiled.Side(tile) * DenseTiled.Side(tile)}", ptx);
        Assert.DoesNotContain(".local", ptx);
        Assert.Equal(32, System.Text.RegularExpressions.Regex.Matches(ptx, @"ld\.shared\.v4\.f32").Count); // 8 k-steps x 4
    }
}
