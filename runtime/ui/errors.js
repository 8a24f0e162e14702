// Errors on this page, for whoever looks (the tests read them): script errors, rejected
// promises and console.error. Loaded first, so an error in app.js is caught too.
window.weirErrors = [];
window.addEventListener("error", (e) => window.weirErrors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => window.weirErrors.push(String(e.reason)));
const consoleError = console.error.bind(console);
console.error = (...args) => {
  window.weirErrors.push(args.map(String).join(" "));
  consoleError(...args);
};
