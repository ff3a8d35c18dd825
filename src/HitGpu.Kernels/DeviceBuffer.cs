// The one type that owns device memory. Everything else borrows its View (or a SubView of it).
using ILGPU;
using ILGPU.Runtime;

namespace HitGpu.Kernels;

/// <summary>A row-major (Rows, Cols) array of T in accelerator memory.</summary>
public sealed class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    private readonly MemoryBuffer1D<T, Stride1D.Dense> buffer;

    public int Rows { get; }
    public int Cols { get; }
    public int Length => Rows * Cols;
    public ArrayView<T> View => buffer.View;

    internal DeviceBuffer(ComputeDevice device, int rows, int cols)
    {
        if (rows < 0 || cols < 1)
            throw new ArgumentOutOfRangeException(nameof(rows), $"a device buffer needs rows >= 0 and cols >= 1, got ({rows}, {cols})");
        Rows = rows;
        Cols = cols;
        // ILGPU rejects zero-length buffers on some backends; one spare element keeps empty shapes legal.
        buffer = device.Accelerator.Allocate1D<T>(Math.Max(1, (long)rows * cols));
    }

    /// <summary>
    /// <paramref name="buffer"/> when it holds <paramref name="rows"/> rows of <paramref name="cols"/>, else a
    /// new one in its place (made first: should that fail, the old one is still whole), the old one disposed.
    /// </summary>
    public static DeviceBuffer<T> AtLeast(ComputeDevice device, [System.Diagnostics.CodeAnalysis.NotNull] ref DeviceBuffer<T>? buffer, int rows, int cols = 1)
    {
        if (buffer is not null && buffer.Rows >= rows && buffer.Cols == cols)
            return buffer;
        var larger = new DeviceBuffer<T>(device, rows, cols);
        buffer?.Dispose();
        return buffer = larger;
    }

    /// <summary>Elements [start, start + length) as a view.</summary>
    public ArrayView<T> Slice(int start, int length) => buffer.View.SubView(start, length);

    // ILGPU's CopyFromCPU/CopyToCPU(ref T, length) take a raw address of the host memory without pinning it;
    // a garbage collection during the copy could move a managed array under it. Pin for the copy's duration
    // (the copies synchronise before they return).
    public void CopyFrom(ReadOnlySpan<T> data)
    {
        if (data.Length != Length)
            throw new ArgumentException($"expected {Length} elements ({Rows} x {Cols}), got {data.Length}", nameof(data));
        CopyFrom(0, data);
    }

    /// <summary>Elements [start, start + data.Length) from the host.</summary>
    public unsafe void CopyFrom(int start, ReadOnlySpan<T> data)
    {
        CheckRange(start, data.Length);
        if (data.Length == 0)
            return;
        fixed (T* pinned = data)
            buffer.View.SubView(start, data.Length).CopyFromCPU(ref *pinned, data.Length);
    }

    public void CopyTo(Span<T> destination)
    {
        if (destination.Length != Length)
            throw new ArgumentException($"expected room for {Length} elements, got {destination.Length}", nameof(destination));
        CopyTo(0, destination);
    }

    /// <summary>Elements [start, start + destination.Length) to the host.</summary>
    public unsafe void CopyTo(int start, Span<T> destination)
    {
        CheckRange(start, destination.Length);
        if (destination.Length == 0)
            return;
        fixed (T* pinned = destination)
            buffer.View.SubView(start, destination.Length).CopyToCPU(ref *pinned, destination.Length);
    }

    private void CheckRange(int start, int length)
    {
        if (start < 0 || start + length > Length)
            throw new ArgumentOutOfRangeException(nameof(start), $"elements [{start}, {start + length}) outside a buffer of {Length}");
    }

    public T[] ToArray()
    {
        var result = new T[Length];
        CopyTo(result);
        return result;
    }

    public void Clear() => buffer.MemSetToZero();

    public void Dispose() => buffer.Dispose();
}
