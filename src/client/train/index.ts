// On-device training of R (docs/on-device-training.md).
export { chooseStepShape, estimateStepBytes, type StepShape } from "./budget.ts";
export { batches, IGNORE_INDEX, packRows, type Row, splitRows } from "./data.ts";
export { ADAMW_DEFAULTS, AdamW, type AdamWOptions, clipGradNorm, gradNorm } from "./optimizer.ts";
export {
  initR,
  OnDeviceTrainer,
  type PersonalizeOptions,
  type PersonalizeResult,
  R_INIT_STD,
} from "./personalize.ts";
export { learningRate, type ScheduleOptions } from "./schedule.ts";
export { createTrainStep, type StepResult, TrainStep } from "./step.ts";
export {
  checkTrainInfo,
  loadTrainFiles,
  type TrainFiles,
  type TrainInfo,
} from "./train-files.ts";
export {
  evaluate,
  MAX_STEPS,
  rowsFromTexts,
  TRAIN_DEFAULTS,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
  trainRows,
} from "./trainer.ts";
