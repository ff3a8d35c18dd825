// Column windows: the three reductions of the batched layer (BatchedDenseReductions.cs) sum eight neighbouring
// columns a work item, read through cursors that step a row at a time.
using ILGPU;

namespace HitGpu.Kernels;

/// <summary>Eight floats: a column window's values, two 16-byte vectors.</summary>
public struct Float8
{
    public Float4 Lo, Hi;

    public Float8(Float4 lo, Float4 hi) => (Lo, Hi) = (lo, hi);

    /// <summary>sum + a b, column by column (each column's sum as one at a time would add it).</summary>
    public static Float8 Fma(Float8 sum, Float8 a, Float8 b) => new(Fma(sum.Lo, a.Lo, b.Lo), Fma(sum.Hi, a.Hi, b.Hi));

    public static Float8 Add(Float8 sum, Float8 a) => new(
        new Float4(sum.Lo.X + a.Lo.X, sum.Lo.Y + a.Lo.Y, sum.Lo.Z + a.Lo.Z, sum.Lo.W + a.Lo.W),
        new Float4(sum.Hi.X + a.Hi.X, sum.Hi.Y + a.Hi.Y, sum.Hi.Z + a.Hi.Z, sum.Hi.W + a.Hi.W));

    private static Float4 Fma(Float4 s, Float4 a, Float4 b) => new(s.X + a.X * b.X, s.Y + a.Y * b.Y, s.Z + a.Z * b.Z, s.W + a.W * b.W);
}

/// <summary>
/// Eight neighbouring columns of a row: a batched reduction's share of work. The window read is always eight
/// columns inside the row from <see cref="First"/> (the last window of a row moved back to end at the row's
/// end, its first <see cref="Skip"/> columns the window before's, summed twice and stored once), so one row's
/// loads sit at fixed offsets from one address: two 16-byte loads where the rows are aligned (VectorLoads),
/// eight scalar ones otherwise. A row narrower than eight has one window, its loads clamped to the row
/// (RowCursor.LoadClamped; <see cref="Wide"/> false).
/// </summary>
public readonly struct ColumnWindow
{
    public const int Width = 8;
    public readonly int First, Skip, Columns;      // the window's first column; those stored: [First + Skip, First + Columns)
    private readonly int last;                     // the window's last column in the row, from First (clamps the loads)

    private ColumnWindow(int window, int cols)
    {
        First = cols >= Width ? Math.Min(Width * window, cols - Width) : 0;
        Skip = Width * window - First;
        Columns = Math.Min(Width, cols - First);
        last = Columns - 1;
    }

    /// <summary>How many windows cover <paramref name="cols"/> columns.</summary>
    public static int Count(int cols) => (cols + Width - 1) / Width;

    public static ColumnWindow Of(int window, int cols) => new(window, cols);

    /// <summary>Whether the window is eight columns of the row (RowCursor.Load may read it).</summary>
    public bool Wide => Columns == Width;

    /// <summary>The column First + c of the window, clamped to the row.</summary>
    public int Clamped(int c) => Math.Min(c, last);

    /// <summary>The window's own columns of <paramref name="v"/>, from element <paramref name="at"/> (its column First).</summary>
    public void Store(ArrayView<float> data, long at, Float8 v)
    {
        StoreOne(data, at, 0, v.Lo.X);
        StoreOne(data, at, 1, v.Lo.Y);
        StoreOne(data, at, 2, v.Lo.Z);
        StoreOne(data, at, 3, v.Lo.W);
        StoreOne(data, at, 4, v.Hi.X);
        StoreOne(data, at, 5, v.Hi.Y);
        StoreOne(data, at, 6, v.Hi.Z);
        StoreOne(data, at, 7, v.Hi.W);
    }

    private void StoreOne(ArrayView<float> data, long at, int c, float value)
    {
        if (c >= Skip && c < Columns)
            data[at + c] = value;
    }
}

/// <summary>
/// A view of one row from a column window on, that steps a row at a time: 16-byte vectors for vector loads
/// (cast from the kernel's argument), floats otherwise. A cursor starts each pass of a loop afresh from
/// the row's index and steps only inside it, to rows that exist: ILGPU checks a view's bounds on the CPU
/// accelerator, and a cursor carried from pass to pass through a choice loses its alignment (scalar loads).
/// </summary>
public readonly struct RowCursor<TLoads> where TLoads : struct, IProductLoads
{
    private readonly ArrayView<float> scalars;
    private readonly ArrayView<Float4> vectors;

    private RowCursor(ArrayView<float> scalars, ArrayView<Float4> vectors) => (this.scalars, this.vectors) = (scalars, vectors);

    /// <summary>A cursor at element <paramref name="at"/> of <paramref name="data"/> (a multiple of 4 for vector loads).</summary>
    public static RowCursor<TLoads> At(ArrayView<float> data, long at) =>
        default(TLoads).Vector ? new(default, data.Cast<Float4>().SubView(at >> 2)) : new(data.SubView(at), default);

    /// <summary>A step of <paramref name="elements"/> (a multiple of 4 for vector loads) in the cursor's units, found once before a loop.</summary>
    public static long Units(long elements) => default(TLoads).Vector ? elements >> 2 : elements;

    /// <summary>The cursor <paramref name="units"/> on (<see cref="Units"/>): a row that exists, or an element of one.</summary>
    public RowCursor<TLoads> Next(long units) =>
        default(TLoads).Vector ? new(default, vectors.SubView(units)) : new(scalars.SubView(units), default);

    /// <summary>The window's eight values, when it is eight columns of the row (<see cref="ColumnWindow.Wide"/>).</summary>
    public Float8 Load() => default(TLoads).Vector ? new Float8(vectors[0], vectors[1])
        : new Float8(new Float4(scalars[0], scalars[1], scalars[2], scalars[3]), new Float4(scalars[4], scalars[5], scalars[6], scalars[7]));

    /// <summary>The window's values, any width (past the row's end, its last column again).</summary>
    public Float8 LoadClamped(in ColumnWindow w) => w.Wide ? Load()
        : new Float8(new Float4(scalars[0], scalars[w.Clamped(1)], scalars[w.Clamped(2)], scalars[w.Clamped(3)]),
            new Float4(scalars[w.Clamped(4)], scalars[w.Clamped(5)], scalars[w.Clamped(6)], scalars[w.Clamped(7)]));
}
