export {
  AdapterClient,
  type AdapterClientOptions,
  type FetchedAdapter,
  type UploadResult,
} from "./client.ts";
