// CSS imported for its effect: Vite bundles it into the page's stylesheet.
declare module "*.css";
