// Where a kernel reads its input rows from: a row-major matrix in place, or gathered through an index (a
// shuffled mini-batch read straight from the training set, no copy).
using ILGPU;

namespace HitGpu.Kernels;

/// <summary>
/// Rows of a row-major matrix with <see cref="Cols"/> columns, read either in place (row r is
/// Data[Offset + r]) or gathered through an index (row r is Data[Index[Offset + r]]): the first layer reads
/// a shuffled mini-batch straight from the training set this way, with no copy.
/// </summary>
public struct RowSource
{
    public ArrayView<float> Data;
    public ArrayView<int> Index;
    public int Offset;
    public int Cols;
    public int Gathered;

    public static RowSource InPlace(ArrayView<float> data, int cols, int offset = 0) =>
        new() { Data = data, Index = ArrayView<int>.Empty, Offset = offset, Cols = cols, Gathered = 0 };

    public static RowSource Gather(ArrayView<float> data, int cols, ArrayView<int> index, int offset) =>
        new() { Data = data, Index = index, Offset = offset, Cols = cols, Gathered = 1 };

    /// <summary>Index of the first element of row r in <see cref="Data"/>.</summary>
    public readonly int RowStart(int r) => (Gathered != 0 ? Index[Offset + r] : Offset + r) * Cols;

    internal readonly void Check(int rows, string what)
    {
        long dataRows = Data.Length / Math.Max(1, Cols);
        if (Gathered != 0)
        {
            if (Offset < 0 || Offset + rows > Index.Length)
                throw new ArgumentException($"{what}: index rows [{Offset}, {Offset + rows}) outside an index of {Index.Length}");
        }
        else if (Offset < 0 || Offset + rows > dataRows)
        {
            throw new ArgumentException($"{what}: rows [{Offset}, {Offset + rows}) outside a matrix of {dataRows} rows");
        }
    }
}
