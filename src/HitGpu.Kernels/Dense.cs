// Dense layer y = f(x W^T + b): forward kernel (bias and activation fused), backward kernels (weight and
// bias gradient in one launch, input gradient fused with the previous activation's derivative), and the
// launchers. Their reference is the one layer reference, BatchedDense's, at one member without adapters
// (the tests hold both variants to it). Shapes: x (rows, in), W (out, in) row-major as in PyTorch, b (out),
// y (rows, out). Every output element is one thread's sum in a fixed order: no atomics, same bits each run.
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

    public static RowSource InPlace(ArrayView<float> data, int cols, ArrayView<int> unusedIndex, int offset = 0) =>
        new() { Data = data, Index = unusedIndex, Offset = offset, Cols = cols, Gathered = 0 };

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

public struct DenseForwardArgs
{
    public RowSource X;            // (rows, in)
    public ArrayView<float> Weight; // (out, in)
    public ArrayView<float> Bias;   // (out)
    public ArrayView<float> Y;      // (rows, out)
    public int Rows, Inputs, Outputs, Activation;
}

public struct DenseBackwardArgs
{
    public RowSource X;                    // (rows, in): the layer's input, i.e. the previous layer's activated output
    public ArrayView<float> Weight;         // (out, in)
    public ArrayView<float> OutputGradient; // dL/dz, (rows, out): gradient at this layer's pre-activation
    public ArrayView<float> WeightGradient; // dL/dW, (out, in)
    public ArrayView<float> BiasGradient;   // dL/db, (out)
    public ArrayView<float> InputGradient;  // dL/dz of the previous layer, (rows, in)
    public int Rows, Inputs, Outputs;
    public int InputActivation;             // activation that produced X, whose derivative the input gradient takes
}

public static class Dense
{
    // ---- kernels ----

    /// <summary>One element of y per work item: y[r, o] = f(b[o] + sum_i x[r, i] W[o, i]).</summary>
    public static void ForwardKernel(DenseForwardArgs a, int blocked)
    {
        var range = WorkRange.OfThread(a.Rows * a.Outputs, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int r = e / a.Outputs, o = e - r * a.Outputs;
            int xStart = a.X.RowStart(r), wStart = o * a.Inputs;
            float sum = a.Bias[o];
            for (int i = 0; i < a.Inputs; i++)
                sum += a.X.Data[xStart + i] * a.Weight[wStart + i];
            a.Y[e] = Activations.Apply(a.Activation, sum);
        }
    }

    /// <summary>
    /// Work items 0 .. out*in-1 are weight-gradient elements (o, i), the last out items bias-gradient elements:
    /// both are sums over the rows of the batch, in row order.
    /// </summary>
    public static void ParameterGradientKernel(DenseBackwardArgs a, int blocked)
    {
        int weights = a.Outputs * a.Inputs;
        var range = WorkRange.OfThread(weights + a.Outputs, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            float sum = 0f;
            if (e < weights)
            {
                int o = e / a.Inputs, i = e - o * a.Inputs;
                for (int r = 0; r < a.Rows; r++)
                    sum += a.OutputGradient[r * a.Outputs + o] * a.X.Data[a.X.RowStart(r) + i];
                a.WeightGradient[e] = sum;
            }
            else
            {
                int o = e - weights;
                for (int r = 0; r < a.Rows; r++)
                    sum += a.OutputGradient[r * a.Outputs + o];
                a.BiasGradient[o] = sum;
            }
        }
    }

    /// <summary>One element of the previous layer's dL/dz per work item: (sum_o dz[r, o] W[o, i]) * f'(x[r, i]).</summary>
    public static void InputGradientKernel(DenseBackwardArgs a, int blocked)
    {
        var range = WorkRange.OfThread(a.Rows * a.Inputs, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int r = e / a.Inputs, i = e - r * a.Inputs;
            float sum = 0f;
            for (int o = 0; o < a.Outputs; o++)
                sum += a.OutputGradient[r * a.Outputs + o] * a.Weight[o * a.Inputs + i];
            a.InputGradient[e] = sum * Activations.DerivativeFromOutput(a.InputActivation, a.X.Data[a.X.RowStart(r) + i]);
        }
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, DenseForwardArgs, int>? denseForward;
    private Action<KernelConfig, DenseBackwardArgs, int>? denseParameterGradient, denseInputGradient;

    public void DenseForward(in DenseForwardArgs a)
    {
        a.X.Check(a.Rows, "dense forward x");
        Require(a.Weight.Length == (long)a.Outputs * a.Inputs, "dense forward: weight must be (out, in)");
        Require(a.Bias.Length == a.Outputs, "dense forward: bias must be (out)");
        Require(a.Y.Length >= (long)a.Rows * a.Outputs, "dense forward: y must hold (rows, out)");
        if (Plan.DenseVariantFor(a.Rows, a.Outputs, a.Inputs) == DenseVariant.Tiled)
        {
            // Y = f(X W^T + b): B(k, n) = W[n, k], k along W's rows as along X's.
            TiledProduct(new ProductArgs
            {
                A = ProductOperand.Of(a.X), B = ProductOperand.Of(RowSource.InPlace(a.Weight, a.Inputs, a.X.Index)), C = a.Y,
                HasBias = 1, Bias = a.Bias, M = a.Rows, N = a.Outputs, K = a.Inputs, Activation = a.Activation,
            }, aKAlongRows: true, bKAlongRows: true);
            return;
        }
        var shape = Plan.ShapeFor(a.Rows * a.Outputs);
        (denseForward ??= LoadKernel<DenseForwardArgs, int>(Dense.ForwardKernel))(shape.Config, a, shape.BlockedFlag);
    }

    /// <summary>Weight and bias gradients, then, unless <paramref name="withInputGradient"/> is false (the first layer), the input gradient.</summary>
    public void DenseBackward(in DenseBackwardArgs a, bool withInputGradient)
    {
        a.X.Check(a.Rows, "dense backward x");
        Require(a.Weight.Length == (long)a.Outputs * a.Inputs, "dense backward: weight must be (out, in)");
        Require(a.OutputGradient.Length >= (long)a.Rows * a.Outputs, "dense backward: output gradient must hold (rows, out)");
        Require(a.WeightGradient.Length == (long)a.Outputs * a.Inputs, "dense backward: weight gradient must be (out, in)");
        Require(a.BiasGradient.Length == a.Outputs, "dense backward: bias gradient must be (out)");
        Require(Activations.SlopeFromOutput((Activation)a.InputActivation), "dense backward: the input's activation must take its slope from its output (a cosine needs the batched layer)");
        if (Plan.DenseVariantFor(a.Outputs, a.Inputs, a.Rows) == DenseVariant.Tiled)
        {
            // dW = dZ^T X and db = dZ^T 1: reductions over the rows, tiled like any product (split over the rows
            // when the batch is large: a small layer's few weights would otherwise each walk every row alone).
            var outputGradient = ProductOperand.Of(RowSource.InPlace(a.OutputGradient, a.Outputs, a.X.Index));
            TiledProduct(new ProductArgs
            {
                A = outputGradient, B = ProductOperand.Of(a.X), C = a.WeightGradient, M = a.Outputs, N = a.Inputs, K = a.Rows,
            }, aKAlongRows: false, bKAlongRows: false);
            TiledProduct(new ProductArgs
            {
                A = outputGradient, B = ProductOperand.Of(RowSource.InPlace(Ones(a.Rows), 1, a.X.Index)), C = a.BiasGradient, M = a.Outputs, N = 1, K = a.Rows,
            }, aKAlongRows: false, bKAlongRows: false);
            if (!withInputGradient)
                return;
            Require(a.InputGradient.Length >= (long)a.Rows * a.Inputs, "dense backward: input gradient must hold (rows, in)");
            // dX = (dZ W) * f'(X).
            TiledProduct(new ProductArgs
            {
                A = outputGradient, B = ProductOperand.Of(RowSource.InPlace(a.Weight, a.Inputs, a.X.Index)), C = a.InputGradient,
                M = a.Rows, N = a.Inputs, K = a.Outputs, HasDerivative = 1, Derivative = a.X, DerivativeActivation = a.InputActivation,
            }, aKAlongRows: true, bKAlongRows: false);
            return;
        }
        var shape = Plan.ShapeFor(a.Outputs * (a.Inputs + 1));
        (denseParameterGradient ??= LoadKernel<DenseBackwardArgs, int>(Dense.ParameterGradientKernel))(shape.Config, a, shape.BlockedFlag);
        if (!withInputGradient)
            return;
        Require(a.InputGradient.Length >= (long)a.Rows * a.Inputs, "dense backward: input gradient must hold (rows, in)");
        shape = Plan.ShapeFor(a.Rows * a.Inputs);
        (denseInputGradient ??= LoadKernel<DenseBackwardArgs, int>(Dense.InputGradientKernel))(shape.Config, a, shape.BlockedFlag);
    }
}
