// The planning module's public API (shared by the server, the operator and `hybridserve plan`).
// Everything here is pure: no I/O, no clocks, no randomness.
export { PlanError } from './errors.js';
export {
  type HardwareProfile,
  type MeasuredValues,
  KNOWN_PRODUCTS,
  hardwareProfile,
  requireHardwareProfile,
  withMeasured,
  validateHardware,
} from './hardware.js';
export {
  type ModelProfile,
  modelProfile,
  actIsSmaller,
  type WeightDtype,
  WEIGHT_DTYPES,
  weightElementBytes,
  parseWeightDtype,
} from './model-profile.js';
export {
  type GpuLayout,
  type StepInput,
  type StepCost,
  type LayerTimes,
  type Prediction,
  type WorkloadShape,
  gpuLayout,
  decodeStepCost,
  prefillSeconds,
  predict,
  hostTierTokens,
  gpuReserveBytes,
  overlapped,
  MIN_MINIBATCH_TOKENS,
} from './cost-model.js';
export {
  type WorkspaceShape,
  engineWorkspaceBytes,
  engineLayerBufferBytes,
  workspaceStepRows,
  ENGINE_LAYER_SLOTS,
} from './engine-workspace.js';
export {
  type PlacementInput,
  type Placement,
  type RunShape,
  placeNode,
  tieredLayout,
  miniBatchCandidates,
  withGpuBlocks,
  gpuKvBlockBytes,
  batchCandidates,
  explainPlacement,
} from './placement.js';
export {
  type HostBudgetSpec,
  type HostBudget,
  type HostLayout,
  type PoolSplit,
  hostMemoryBudget,
  hostMemoryBudgetDetail,
  defaultHeadroomBytes,
  runtimeOverheadBytes,
  hostLayout,
  podMemoryResources,
  tokenCacheBytes,
  capacitySequences,
  blocksPerSequence,
  splitCache,
  fractionBoundsForPools,
} from './allocation.js';
export { type SolveInput, type Candidate, type Solution, solveActFraction, evaluate as evaluateFraction } from './solver.js';
export { type NodePlanInput, type LargestStep, type Plan, type SweepPoint, planNode, planFile } from './plan.js';
export { type RunningSequence, type MiniBatchOptions, type MiniBatch, formMiniBatches, sequenceWorkingBytes } from './minibatch.js';
export { type PhaseTimes, type RetuneState, type RetuneOptions, DEFAULT_RETUNE_OPTIONS, initialRetuneState, retune } from './retune.js';
export {
  type PipelineCostInput,
  type PipelineInput,
  type PipelinePrediction,
  pipelineCost,
  predictPipeline,
  layoutOfPlan,
} from './pipeline-predict.js';
export { type GpuCountInput, type GpuCountCandidate, type GpuCountChoice, TIE_MARGIN, chooseGpuCount } from './gpu-count.js';
