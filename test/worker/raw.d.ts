// Vite's `?raw` imports: a file's text, used to hold docs against the code.
declare module "*?raw" {
  const text: string;
  export default text;
}
